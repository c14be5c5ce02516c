package scanfolder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
)

// countingReaderAt counts the bytes a completeness check asks for.
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.n.Add(int64(len(p)))
	return c.r.ReadAt(p, off)
}

// readBound is what one check may read: its budget plus the first
// (unbudgeted) sniffing read.
const readBound = checkBudgetBytes + 1024

// tiffSharedSubIFDs is a TIFF whose IFDs each point, through SubIFDs, at
// one shared array of subs offsets, each naming a distinct empty IFD: the
// shape that made the queue of IFDs to visit grow without bound.
func tiffSharedSubIFDs(ifds, subs int) []byte {
	bo := binary.LittleEndian
	const ifdLen = 2 + 12 + 4
	arr := 8 + ifds*ifdLen
	empty := arr + 4*subs // empty IFDs: count 0, next 0
	b := make([]byte, empty+6*subs)
	copy(b, "II*\x00")
	bo.PutUint32(b[4:], 8)
	for i := range ifds {
		p := 8 + i*ifdLen
		bo.PutUint16(b[p:], 1)
		bo.PutUint16(b[p+2:], tagSubIFDs)
		bo.PutUint16(b[p+4:], 4)
		bo.PutUint32(b[p+6:], uint32(subs))
		bo.PutUint32(b[p+10:], uint32(arr))
		if i+1 < ifds {
			bo.PutUint32(b[p+14:], uint32(p+ifdLen))
		}
	}
	for i := range subs {
		bo.PutUint32(b[arr+4*i:], uint32(empty+6*i))
	}
	return b
}

// tiffOverlappingChain is a chain of n IFDs that each claim 65535 entries
// and overlap each other: every IFD read is 786 KB of the same bytes.
func tiffOverlappingChain(n int) []byte {
	bo := binary.LittleEndian
	const span = 2 + 12*65535
	b := make([]byte, 8+span+4*n+4)
	copy(b, "II*\x00")
	bo.PutUint32(b[4:], 8)
	for i := range n {
		at := 8 + 4*i
		bo.PutUint16(b[at:], 65535)
		next := uint32(0)
		if i+1 < n {
			next = uint32(at + 4)
		}
		bo.PutUint32(b[at+span:], next)
	}
	return b
}

// Crafted TIFFs cannot make a check read or queue without bound: past the
// budget the answer is "cannot tell" (formatUnknown), never a crash, a long
// stall or "incomplete".
func TestTIFFOverBudget(t *testing.T) {
	for name, data := range map[string][]byte{
		"SubIFD count over the cap":      tiffSharedSubIFDs(1, maxTIFFSubIFDs+1),
		"shared SubIFD array, many IFDs": tiffSharedSubIFDs(40, maxTIFFSubIFDs),
		"overlapping 65535-entry chain":  tiffOverlappingChain(200),
	} {
		c := &countingReaderAt{r: bytes.NewReader(data)}
		v, why, err := completeness(c, int64(len(data)))
		if err != nil || v != formatUnknown {
			t.Errorf("%s: verdict %v (%s, %v), want unknown", name, v, why, err)
		}
		if n := c.n.Load(); n > readBound {
			t.Errorf("%s: read %d bytes, over the budget of %d", name, n, readBound)
		}
	}
	// A modest SubIFD tree is still followed.
	if v, why := verdictOf(t, tiffSharedSubIFDs(1, 8)); v != formatComplete {
		t.Errorf("8 SubIFDs: verdict %v (%s), want complete", v, why)
	}
}

// FuzzCompletenessBudget: whatever the bytes, one check reads at most its
// budget.
func FuzzCompletenessBudget(f *testing.F) {
	for _, s := range [][]byte{tiffSharedSubIFDs(3, 4), tiffOverlappingChain(2), testTIFF(), testPNG(f), testJPEG(f, false)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &countingReaderAt{r: bytes.NewReader(data)}
		_, _, _ = completeness(c, int64(len(data)))
		if n := c.n.Load(); n > readBound {
			t.Fatalf("read %d bytes of a %d-byte file, over the budget of %d", n, len(data), readBound)
		}
	})
}

// A file that shrinks under the check is "changed" (looked at again after a
// quiet period), not a read failure counting towards MaxReadRetries.
func TestCompletenessShrunkIsChanged(t *testing.T) {
	for name, data := range map[string][]byte{"png": testPNG(t), "tiff": testTIFF(), "jpeg": testJPEG(t, false)} {
		_, _, err := completeness(bytes.NewReader(data[:len(data)/2]), int64(len(data)))
		if !errors.Is(err, errFileChanged) {
			t.Errorf("%s: err %v, want errFileChanged", name, err)
		}
	}
}

// jpegSegmentEnds lists the offsets where each header segment of a JPEG
// ends (the SOS segment's included).
func jpegSegmentEnds(data []byte) []int {
	var out []int
	for off := 2; off+4 <= len(data); {
		m := data[off+1]
		n := int(binary.BigEndian.Uint16(data[off+2:]))
		off += 2 + n
		out = append(out, off)
		if m == 0xDA {
			break
		}
	}
	return out
}

// Windows and SMB clients often set a file's size first: the end is zeros
// until the writer gets there. Zeros where a marker or chunk header must be
// are "incomplete", never "cannot tell".
func TestPreallocatedZeroFilled(t *testing.T) {
	jpg := testJPEG(t, false)
	for _, end := range jpegSegmentEnds(jpg)[:2] {
		pre := append(append([]byte{}, jpg[:end]...), make([]byte, len(jpg)-end+4096)...)
		if v, why := verdictOf(t, pre); v != formatIncomplete {
			t.Errorf("JPEG zero-filled from %d: verdict %v (%s), want incomplete", end, v, why)
		}
	}
	png := testPNG(t)
	pre := append(append([]byte{}, png[:33]...), make([]byte, 2<<20)...) // signature + IHDR, then 2 MB of zeros
	if v, why := verdictOf(t, pre); v != formatIncomplete {
		t.Errorf("PNG zero-filled after IHDR: verdict %v (%s), want incomplete", v, why)
	}
}

// sefTrailer is a Samsung trailer: data blocks, then a SEFH directory
// naming them (offset back from SEFH), then its length and "SEFT".
func sefTrailer(block []byte) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	b.Write(block)
	dir := make([]byte, 12+12)
	copy(dir, "SEFH")
	le.PutUint32(dir[4:], 106)
	le.PutUint32(dir[8:], 1)
	le.PutUint16(dir[14:], 0x0a30)
	le.PutUint32(dir[16:], uint32(len(block)))
	le.PutUint32(dir[20:], uint32(len(block)))
	b.Write(dir)
	binary.Write(&b, le, uint32(len(dir)))
	b.WriteString("SEFT")
	return b.Bytes()
}

// mp4Boxes is a tiny MP4: ftyp and mdat boxes.
func mp4Boxes() []byte {
	var b bytes.Buffer
	box := func(typ string, body []byte) {
		binary.Write(&b, binary.BigEndian, uint32(8+len(body)))
		b.WriteString(typ)
		b.Write(body)
	}
	box("ftyp", []byte("isom\x00\x00\x02\x00isomiso2mp41"))
	box("mdat", bytes.Repeat([]byte{0x5a}, 3000))
	return b.Bytes()
}

// withXMP inserts an APP1 XMP segment after SOI.
func withXMP(jpg []byte, xmp string) []byte {
	payload := append([]byte("http://ns.adobe.com/xap/1.0/\x00"), xmp...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	return append(append(append(append([]byte{}, jpg[:2]...), seg...), payload...), jpg[2:]...)
}

// Finished photos with data after EOI (Samsung trailers, motion photos with
// the video appended) are complete; cut inside the trailer they are not.
func TestJPEGTrailers(t *testing.T) {
	jpg := testJPEG(t, false)
	mp4 := mp4Boxes()
	sef := append(append([]byte{}, jpg...), sefTrailer([]byte("MotionPhoto_Data"+string(mp4)))...)
	gcam := append(withXMP(jpg, `<x:xmpmeta><rdf:Description GCamera:MicroVideo="1" GCamera:MicroVideoOffset="`+strconv.Itoa(len(mp4))+`"/></x:xmpmeta>`), mp4...)
	item := append(withXMP(jpg, `<Container:Directory><rdf:Seq><rdf:li><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary"/></rdf:li>`+
		`<rdf:li><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" Item:Length="`+strconv.Itoa(len(mp4))+`"/></rdf:li></rdf:Seq></Container:Directory>`), mp4...)
	e := jpegSegmentEnds(jpg)[0]
	odd := append(append(append([]byte{}, jpg[:e]...), 0x42), jpg[e:]...) // a stray byte between segments
	for name, c := range map[string]struct {
		data []byte
		want formatVerdict
	}{
		"Samsung SEF trailer":           {sef, formatComplete},
		"SEF trailer cut":               {sef[:len(sef)-5], formatIncomplete},
		"GCamera MicroVideoOffset":      {gcam, formatComplete},
		"MicroVideo cut":                {gcam[:len(gcam)-100], formatIncomplete},
		"Container MotionPhoto item":    {item, formatComplete},
		"MotionPhoto item cut":          {item[:len(item)-1], formatIncomplete},
		"junk after EOI, no hint":       {append(append([]byte{}, jpg...), "junk"...), formatIncomplete},
		"odd layout, still ends in EOI": {odd, formatComplete},
		"odd layout, cut":               {odd[:len(odd)-10], formatIncomplete},
	} {
		if v, why := verdictOf(t, c.data); v != c.want {
			t.Errorf("%s: verdict %v (%s), want %v", name, v, why, c.want)
		}
	}
}

// Format magics win over a "%PDF-" that happens to sit in the first KiB,
// and a PDF whose last startxref points nowhere is not complete (a
// linearized PDF cut after its first-page section ends "startxref 0 %%EOF").
func TestSniffOrderAndStartxref(t *testing.T) {
	jpg := testJPEG(t, false)
	com := append([]byte{0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x0A}, "%PDF-1.4"...)
	com = append(com, jpg[2:]...)
	if v, why := verdictOf(t, com); v != formatComplete {
		t.Errorf("JPEG with %%PDF- in a comment: verdict %v (%s), want complete", v, why)
	}
	pdf := sample(t, "sample.pdf")
	lin := append(append([]byte{}, pdf[:len(pdf)/2]...), "\nstartxref\n0\n%%EOF\n"...)
	if v, why := verdictOf(t, lin); v != formatIncomplete {
		t.Errorf("linearized PDF cut after its first section: verdict %v (%s), want incomplete", v, why)
	}
	far := append(append([]byte{}, pdf...), "\nstartxref\n99999999\n%%EOF\n"...)
	if v, why := verdictOf(t, far); v != formatIncomplete {
		t.Errorf("startxref past the end: verdict %v (%s), want incomplete", v, why)
	}
}
