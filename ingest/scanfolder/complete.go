package scanfolder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
)

// Format completeness checks. A scanner that pauses between pages leaves a
// file that looks stable but is cut short; for the formats scanners write we
// can tell from the bytes whether the writer got to the end. Each check reads
// only what it needs (the tail, or a walk over chunk/segment/IFD headers), so
// it costs a few small reads even on a 35 MB scan, and it is repeated while an
// incomplete file waits.

// formatVerdict is what a completeness check says about a file.
type formatVerdict int

const (
	formatUnknown    formatVerdict = iota // not a format we check: the other readiness signals decide
	formatComplete                        // the format's end marker is there and its structure lies inside the file
	formatIncomplete                      // cut short: wait for the writer to finish
)

// Each check gets a budget: crafted files (a TIFF whose IFDs share one huge
// SubIFD array, or overlap each other) must not make spoold read gigabytes or
// run out of memory, and an incomplete file is checked again every few
// seconds. Past the budget the check cannot tell, which is formatUnknown: the
// other readiness signals decide, as for any unchecked type.
const (
	checkBudgetBytes   = 4 << 20 // bytes read by one check
	checkBudgetEntries = 1 << 20 // TIFF directory entries parsed by one check
)

// errOverBudget ends a check that would read more than checkBudgetBytes.
var errOverBudget = errors.New("scanfolder: completeness check over its read budget")

// budgetReader refuses reads past the check's byte budget and reports a
// short read (the file shrank since its size was taken) as errFileChanged:
// that is a writer at work, not an unreadable file.
type budgetReader struct {
	r    io.ReaderAt
	left int64
}

func (b *budgetReader) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > b.left {
		return 0, errOverBudget
	}
	b.left -= int64(len(p))
	n, err := b.r.ReadAt(p, off)
	if n < len(p) && (err == nil || errors.Is(err, io.EOF)) {
		return n, errFileChanged
	}
	return n, err
}

// completeness sniffs the format from the first bytes and runs its check.
// The returned string says what is missing, for logs and the failed/ reason.
// errFileChanged means the file shrank under the check.
func completeness(r io.ReaderAt, size int64) (formatVerdict, string, error) {
	v, why, err := sniffAndCheck(&budgetReader{r: r, left: checkBudgetBytes}, size)
	if errors.Is(err, errOverBudget) {
		return formatUnknown, "", nil
	}
	return v, why, err
}

func sniffAndCheck(r io.ReaderAt, size int64) (formatVerdict, string, error) {
	head := make([]byte, min(size, 1024))
	if _, err := r.ReadAt(head, 0); err != nil {
		return formatUnknown, "", err
	}
	// Magics at offset 0 first: a JPEG or TIFF may well carry "%PDF-" in
	// its first KiB (a comment, EXIF text).
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return checkJPEG(r, size)
	case bytes.HasPrefix(head, pngMagic):
		return checkPNG(r, size)
	case bytes.HasPrefix(head, []byte("II*\x00")):
		return checkTIFF(r, size, binary.LittleEndian)
	case bytes.HasPrefix(head, []byte("MM\x00*")):
		return checkTIFF(r, size, binary.BigEndian)
	case bytes.Contains(head, []byte("%PDF-")):
		// PDF readers accept the header anywhere in the first 1024 bytes.
		return checkPDF(r, size)
	}
	return formatUnknown, "", nil
}

// tail reads up to n bytes at the end of the file with trailing white space
// and NUL padding (what writers leave after an end marker: PDF white space,
// and the padding some devices add to whole blocks) removed.
func tail(r io.ReaderAt, size, n int64) ([]byte, error) {
	n = min(n, size)
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, size-n); err != nil {
		return nil, err
	}
	return bytes.TrimRightFunc(buf, func(r rune) bool { return r < 0x80 && isPDFSpace(byte(r)) }), nil
}

// checkPDF wants the last non-white-space bytes to be %%EOF. An incremental
// update appends a whole new body, xref and trailer ending in its own %%EOF,
// so a file with updates passes once the last one is written; a file cut
// inside an update ends in the update's bytes and waits. The last startxref
// must point inside the file: a linearized PDF cut after its first-page
// section ends with "startxref 0 %%EOF", the real xref still to come.
func checkPDF(r io.ReaderAt, size int64) (formatVerdict, string, error) {
	t, err := tail(r, size, 1024)
	if err != nil {
		return formatUnknown, "", err
	}
	if !bytes.HasSuffix(t, []byte("%%EOF")) {
		return formatIncomplete, "PDF does not end with %%EOF", nil
	}
	if i := bytes.LastIndex(t, []byte("startxref")); i >= 0 {
		rest := bytes.TrimLeftFunc(t[i+len("startxref"):], func(r rune) bool { return r < 0x80 && isPDFSpace(byte(r)) })
		k := 0
		for k < len(rest) && k < 18 && rest[k] >= '0' && rest[k] <= '9' {
			k++
		}
		if k > 0 {
			if x, err := strconv.ParseInt(string(rest[:k]), 10, 64); err == nil && (x <= 0 || x >= size) {
				return formatIncomplete, fmt.Sprintf("PDF's last startxref (%d) does not point inside the file", x), nil
			}
		}
	}
	return formatComplete, "", nil
}

// checkJPEG walks the marker segments up to the first scan (their lengths
// must lie inside the file: a cut inside the EXIF block, whose thumbnail has
// its own EOI, is seen here) and then wants the file to end with EOI (FF D9).
// Entropy-coded data never contains FF D9 (an FF there is followed by 00 or
// a restart marker), so an EOI at the end is the real one. Phones append
// data after EOI (Samsung's SEF trailer, motion photos' MP4 video); such a
// trailer is accepted when it is whole (see jpegTrailer).
//
// Zeros where a marker must be are a preallocated file (Windows and SMB
// clients set the size first) not written that far yet: incomplete. Any
// other layout the walk does not understand still gets the EOI check.
func checkJPEG(r io.ReaderAt, size int64) (formatVerdict, string, error) {
	off := int64(2)
	var hdr [4]byte
	var trailerLen int64 = -1 // from an XMP hint: the motion photo's video length
walk:
	for steps := 0; ; steps++ {
		if steps > maxJPEGSegments {
			break // fill bytes or segments without end: judge by the end
		}
		if off+4 > size {
			return formatIncomplete, "JPEG ends inside its header segments", nil
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return formatUnknown, "", err
		}
		if hdr[0] == 0 {
			return formatIncomplete, fmt.Sprintf("JPEG has zero bytes where a marker must be (offset %d): not written that far yet", off), nil
		}
		if hdr[0] != 0xFF {
			break // not a layout we understand: judge by the end
		}
		m := hdr[1]
		switch {
		case m == 0xFF:
			off++ // fill byte
			continue
		case m == 0xD9:
			return formatComplete, "", nil // EOI before any scan (a header-only file)
		case m == 0x01 || (m >= 0xD0 && m <= 0xD7):
			off += 2 // markers without a length
			continue
		case m == 0:
			return formatIncomplete, fmt.Sprintf("JPEG has zero bytes where a marker must be (offset %d): not written that far yet", off), nil
		}
		seg := int64(binary.BigEndian.Uint16(hdr[2:]))
		if seg < 2 {
			break
		}
		if off+2+seg > size {
			return formatIncomplete, fmt.Sprintf("JPEG segment FF%02X runs past the end of the file", m), nil
		}
		switch m {
		case 0xDA: // SOS: entropy-coded data follows
			break walk
		case 0xE1:
			n, err := xmpTrailerLen(r, off+4, seg-2)
			if err != nil {
				return formatUnknown, "", err
			}
			if n > 0 {
				trailerLen = n
			}
		}
		off += 2 + seg
	}
	t, err := tail(r, size, 64)
	if err != nil {
		return formatUnknown, "", err
	}
	if bytes.HasSuffix(t, []byte{0xFF, 0xD9}) {
		return formatComplete, "", nil
	}
	return jpegTrailer(r, size, trailerLen)
}

// maxJPEGSegments bounds the header walk (each step is one small read).
const maxJPEGSegments = 10000

var (
	xmpNamespace = []byte("http://ns.adobe.com/xap/1.0/\x00")
	// Google motion photos: the video's length, counted from the end.
	reMicroVideoOffset = regexp.MustCompile(`MicroVideoOffset(?:="|>)(\d{1,12})`)
	reMotionPhotoItem  = regexp.MustCompile(`<[^<>]*Item:Semantic="MotionPhoto"[^<>]*>`)
	reItemLength       = regexp.MustCompile(`Item:Length="(\d{1,12})"`)
)

// xmpTrailerLen reads an APP1 segment and, if it is XMP naming a motion
// photo's appended video, returns that video's length (0 if none).
func xmpTrailerLen(r io.ReaderAt, off, n int64) (int64, error) {
	if n < int64(len(xmpNamespace)) {
		return 0, nil
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, off); err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(buf, xmpNamespace) {
		return 0, nil
	}
	var num []byte
	if m := reMicroVideoOffset.FindSubmatch(buf); m != nil {
		num = m[1]
	} else if item := reMotionPhotoItem.Find(buf); item != nil {
		if m := reItemLength.FindSubmatch(item); m != nil {
			num = m[1]
		}
	}
	if num == nil {
		return 0, nil
	}
	v, _ := strconv.ParseInt(string(num), 10, 64)
	return v, nil
}

// jpegTrailer judges a JPEG that does not end with EOI: complete only with
// a whole trailer after an EOI. Samsung writes an SEF directory last ("SEFH"
// ... length, "SEFT"), naming its blocks by their distance back from SEFH;
// the first block must follow an EOI. A motion photo's XMP gives the video's
// length; the video must follow an EOI and be whole MP4 boxes up to the end
// (or up to an SEF trailer, which Samsung adds after it).
func jpegTrailer(r io.ReaderAt, size, videoLen int64) (formatVerdict, string, error) {
	const noEOI = "JPEG does not end with EOI (FF D9)"
	end := size
	var foot [8]byte
	if size >= 8 {
		if _, err := r.ReadAt(foot[:], size-8); err != nil {
			return formatUnknown, "", err
		}
	}
	if string(foot[4:]) == "SEFT" {
		dirLen := int64(binary.LittleEndian.Uint32(foot[:4]))
		sefh := size - 8 - dirLen
		if dirLen < 12 || sefh < 2 || dirLen > 1<<20 {
			return formatIncomplete, "JPEG's Samsung trailer is malformed or cut", nil
		}
		dir := make([]byte, dirLen)
		if _, err := r.ReadAt(dir, sefh); err != nil {
			return formatUnknown, "", err
		}
		count := int64(binary.LittleEndian.Uint32(dir[8:12]))
		if string(dir[:4]) != "SEFH" || 12+12*count > dirLen {
			return formatIncomplete, "JPEG's Samsung trailer is malformed or cut", nil
		}
		first := sefh
		for i := range count {
			e := dir[12+12*i:]
			back, n := int64(binary.LittleEndian.Uint32(e[4:8])), int64(binary.LittleEndian.Uint32(e[8:12]))
			if back > sefh || sefh-back+n > sefh {
				return formatIncomplete, "JPEG's Samsung trailer names data outside the file", nil
			}
			first = min(first, sefh-back)
		}
		if videoLen <= 0 {
			ok, err := eoiAt(r, first)
			if err != nil || !ok {
				return formatIncomplete, "JPEG's Samsung trailer does not follow an EOI", err
			}
			return formatComplete, "", nil
		}
		end = sefh // the motion photo's video ends where the SEF directory's data begins, or at it
		end = min(end, first)
		if videoLen > end {
			end = sefh
		}
	}
	if videoLen <= 0 || videoLen > end {
		return formatIncomplete, noEOI, nil
	}
	start := end - videoLen
	ok, err := eoiAt(r, start)
	if err != nil {
		return formatUnknown, "", err
	}
	if !ok {
		return formatIncomplete, "JPEG's appended video does not follow an EOI (cut, or still being written)", nil
	}
	if whole, err := mp4Whole(r, start, end); err != nil || !whole {
		return formatIncomplete, "JPEG's appended video is cut short", err
	}
	return formatComplete, "", nil
}

// eoiAt reports whether the two bytes before off are EOI.
func eoiAt(r io.ReaderAt, off int64) (bool, error) {
	if off < 2 {
		return false, nil
	}
	var b [2]byte
	if _, err := r.ReadAt(b[:], off-2); err != nil {
		return false, err
	}
	return b == [2]byte{0xFF, 0xD9}, nil
}

// mp4Whole walks MP4 top-level boxes from start: they must begin with ftyp
// and end exactly at end.
func mp4Whole(r io.ReaderAt, start, end int64) (bool, error) {
	var h [16]byte
	for off, n := start, 0; off < end; n++ {
		if n > 10000 || off+8 > end {
			return false, nil
		}
		if _, err := r.ReadAt(h[:8], off); err != nil {
			return false, err
		}
		if n == 0 && string(h[4:8]) != "ftyp" {
			return false, nil
		}
		l := int64(binary.BigEndian.Uint32(h[:4]))
		switch l {
		case 0:
			return true, nil // to the end of the file
		case 1:
			if off+16 > end {
				return false, nil
			}
			if _, err := r.ReadAt(h[8:16], off+8); err != nil {
				return false, err
			}
			l = int64(binary.BigEndian.Uint64(h[8:16]))
		}
		if l < 8 || l > end-off {
			return false, nil
		}
		off += l
	}
	return true, nil
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// maxPNGChunks bounds the chunk walk: 35 MB in 8 KiB IDAT chunks is 4,500.
const maxPNGChunks = 100000

// pngIEND is the whole IEND chunk (length 0, type, CRC), the last 12 bytes
// of every finished PNG.
var pngIEND = []byte("\x00\x00\x00\x00IEND\xaeB`\x82")

// checkPNG walks the chunk list: every chunk must lie inside the file and
// the list must reach IEND. A zero-length chunk of type 0000 is the zeros of
// a preallocated file: incomplete. A walk that gives up (too many chunks, a
// length PNG does not allow) still wants the file to end with IEND.
func checkPNG(r io.ReaderAt, size int64) (formatVerdict, string, error) {
	off := int64(len(pngMagic))
	var hdr [8]byte
	for n := 0; ; n++ {
		if n > maxPNGChunks {
			break
		}
		if off+12 > size {
			return formatIncomplete, "PNG ends before its IEND chunk", nil
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return formatUnknown, "", err
		}
		if hdr == [8]byte{} {
			return formatIncomplete, fmt.Sprintf("PNG has zero bytes where a chunk must be (offset %d): not written that far yet", off), nil
		}
		length := int64(binary.BigEndian.Uint32(hdr[:4]))
		if length > 1<<31-1 {
			break
		}
		end := off + 12 + length
		if end > size {
			return formatIncomplete, fmt.Sprintf("PNG chunk %q runs past the end of the file", printable(hdr[4:8])), nil
		}
		if string(hdr[4:8]) == "IEND" {
			return formatComplete, "", nil
		}
		off = end
	}
	var t [12]byte
	if _, err := r.ReadAt(t[:], size-12); err != nil {
		return formatUnknown, "", err
	}
	if bytes.Equal(t[:], pngIEND) {
		return formatComplete, "", nil
	}
	return formatIncomplete, "PNG does not end with its IEND chunk", nil
}

// TIFF tags whose values point at image data.
const (
	tagStripOffsets    = 273
	tagStripByteCounts = 279
	tagTileOffsets     = 324
	tagTileByteCounts  = 325
	tagSubIFDs         = 330
	maxTIFFIFDs        = 10000 // IFDs visited or waiting to be; a loop in the chain is refused long before this
	maxTIFFSubIFDs     = 1024  // SubIFDs of one IFD (real files have a few: thumbnails, previews)
)

// tiffTypeSize is the byte size of one value of each TIFF field type; 0 for
// types this check does not know (their entries are not followed).
func tiffTypeSize(typ uint16) int64 {
	switch typ {
	case 1, 2, 6, 7: // BYTE ASCII SBYTE UNDEFINED
		return 1
	case 3, 8: // SHORT SSHORT
		return 2
	case 4, 9, 11, 13: // LONG SLONG FLOAT IFD
		return 4
	case 5, 10, 12: // RATIONAL SRATIONAL DOUBLE
		return 8
	}
	return 0
}

// checkTIFF follows the IFD chain from the header: every IFD, every value
// stored outside its entry, and every strip or tile (offset + byte count) must
// lie inside the file. A TIFF is written data first, IFD last by most
// scanners, but some write the IFD first: either way a cut file points past
// its end somewhere.
func checkTIFF(r io.ReaderAt, size int64, bo binary.ByteOrder) (formatVerdict, string, error) {
	var b [12]byte
	if size < 8 {
		return formatIncomplete, "TIFF ends inside its header", nil
	}
	if _, err := r.ReadAt(b[:8], 0); err != nil {
		return formatUnknown, "", err
	}
	next := int64(bo.Uint32(b[4:8]))
	if next == 0 {
		return formatIncomplete, "TIFF has no image file directory yet", nil
	}
	seen := map[int64]bool{}
	queue := []int64{next}
	entries := int64(0)
	for len(queue) > 0 {
		ifd := queue[0]
		queue = queue[1:]
		if seen[ifd] {
			return formatUnknown, "", nil // a loop: malformed, not incomplete
		}
		seen[ifd] = true
		if len(seen) > maxTIFFIFDs {
			return formatUnknown, "", nil
		}
		if ifd+2 > size {
			return formatIncomplete, "TIFF directory lies past the end of the file", nil
		}
		if _, err := r.ReadAt(b[:2], ifd); err != nil {
			return formatUnknown, "", err
		}
		n := int64(bo.Uint16(b[:2]))
		if entries += n; entries > checkBudgetEntries {
			return formatUnknown, "", nil
		}
		if ifd+2+12*n+4 > size {
			return formatIncomplete, "TIFF directory runs past the end of the file", nil
		}
		var offsets, counts []int64
		dir := make([]byte, 12*n+4) // the entries and the next-IFD offset, in one read
		if _, err := r.ReadAt(dir, ifd+2); err != nil {
			return formatUnknown, "", err
		}
		for i := int64(0); i < n; i++ {
			b := dir[12*i : 12*i+12]
			tag, typ, cnt := bo.Uint16(b[0:2]), bo.Uint16(b[2:4]), int64(bo.Uint32(b[4:8]))
			ts := tiffTypeSize(typ)
			if ts == 0 {
				continue
			}
			total := ts * cnt
			valOff := int64(-1) // -1: the values are inside the entry
			if total > 4 {
				valOff = int64(bo.Uint32(b[8:12]))
				if valOff+total > size {
					return formatIncomplete, fmt.Sprintf("TIFF tag %d's values lie past the end of the file", tag), nil
				}
			}
			switch tag {
			case tagStripOffsets, tagTileOffsets, tagStripByteCounts, tagTileByteCounts, tagSubIFDs:
				if typ != 3 && typ != 4 && typ != 13 {
					continue
				}
				if cnt > 1<<20 || (tag == tagSubIFDs && cnt > maxTIFFSubIFDs) {
					return formatUnknown, "", nil
				}
				if tag == tagSubIFDs && int64(len(seen)+len(queue))+cnt > maxTIFFIFDs {
					// IFDs sharing one SubIFD array would queue it again
					// and again: cannot tell, rather than grow without bound.
					return formatUnknown, "", nil
				}
				vals, err := tiffValues(r, bo, b[8:12], valOff, typ, cnt)
				if err != nil {
					return formatUnknown, "", err
				}
				switch tag {
				case tagStripOffsets, tagTileOffsets:
					offsets = vals
				case tagStripByteCounts, tagTileByteCounts:
					counts = vals
				case tagSubIFDs:
					queue = append(queue, vals...)
				}
			}
		}
		if len(offsets) != len(counts) && len(counts) > 0 {
			return formatUnknown, "", nil
		}
		for i, o := range offsets {
			c := int64(0)
			if i < len(counts) {
				c = counts[i]
			}
			if o+c > size {
				return formatIncomplete, fmt.Sprintf("TIFF strip or tile %d lies past the end of the file", i), nil
			}
		}
		if nx := int64(bo.Uint32(dir[12*n:])); nx != 0 {
			queue = append(queue, nx)
		}
	}
	return formatComplete, "", nil
}

// tiffValues reads cnt SHORT or LONG values, from the entry itself (valOff
// -1) or from valOff.
func tiffValues(r io.ReaderAt, bo binary.ByteOrder, inline []byte, valOff int64, typ uint16, cnt int64) ([]int64, error) {
	ts := tiffTypeSize(typ)
	raw := inline[:min(int64(len(inline)), ts*cnt)]
	if valOff >= 0 {
		raw = make([]byte, ts*cnt)
		if _, err := r.ReadAt(raw, valOff); err != nil {
			return nil, err
		}
	}
	out := make([]int64, 0, cnt)
	for i := int64(0); i+ts <= int64(len(raw)); i += ts {
		if ts == 2 {
			out = append(out, int64(bo.Uint16(raw[i:])))
		} else {
			out = append(out, int64(bo.Uint32(raw[i:])))
		}
	}
	return out, nil
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < ' ' || c > '~' {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
