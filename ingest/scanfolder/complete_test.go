package scanfolder

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

func verdictOf(t testing.TB, data []byte) (formatVerdict, string) {
	t.Helper()
	v, why, err := completeness(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("completeness: %v", err)
	}
	return v, why
}

func testPNG(t testing.TB) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 31)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testJPEG(t testing.TB, progressive bool) []byte {
	img := image.NewGray(image.Rect(0, 0, 64, 48))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	img.Set(3, 3, color.Gray{Y: 200})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testTIFF builds a little-endian TIFF with the IFD first and two strips
// after it (the layout where a cut file has an IFD that points past its end).
func testTIFF() []byte {
	bo := binary.LittleEndian
	strip := bytes.Repeat([]byte{0xAB}, 100)
	const entries = 4
	ifdLen := 2 + entries*12 + 4
	offArr := 8 + ifdLen // two LONG offsets stored outside the entry
	data0 := offArr + 8
	b := make([]byte, data0+2*len(strip))
	copy(b, "II*\x00")
	bo.PutUint32(b[4:], 8)
	p := 8
	bo.PutUint16(b[p:], entries)
	p += 2
	put := func(tag, typ uint16, cnt, val uint32) {
		bo.PutUint16(b[p:], tag)
		bo.PutUint16(b[p+2:], typ)
		bo.PutUint32(b[p+4:], cnt)
		bo.PutUint32(b[p+8:], val)
		p += 12
	}
	put(256, 3, 1, 10)                  // width
	put(257, 3, 1, 20)                  // height
	put(273, 4, 2, uint32(offArr))      // StripOffsets -> array
	put(279, 3, 2, uint32(100|100<<16)) // StripByteCounts, two SHORTs inline
	bo.PutUint32(b[p:], 0)
	bo.PutUint32(b[offArr:], uint32(data0))
	bo.PutUint32(b[offArr+4:], uint32(data0+len(strip)))
	copy(b[data0:], strip)
	copy(b[data0+len(strip):], strip)
	return b
}

func TestCompletenessSamples(t *testing.T) {
	cases := map[string][]byte{
		"sample.pdf":   sample(t, "sample.pdf"),
		"sample.jpg":   sample(t, "sample.jpg"),
		"sample.tiff":  sample(t, "sample.tiff"),
		"png":          testPNG(t),
		"jpeg":         testJPEG(t, false),
		"tiff IFD 1st": testTIFF(),
	}
	for name, data := range cases {
		if v, why := verdictOf(t, data); v != formatComplete {
			t.Errorf("%s: verdict %v (%s), want complete", name, v, why)
		}
	}
	// Every cut of these formats is seen as incomplete (the PDF has a single
	// %%EOF; cuts inside the first bytes are too short to sniff).
	for name, data := range cases {
		for n := 8; n < len(data); n++ {
			cut := data[:n]
			if name == "sample.pdf" && bytes.HasSuffix(bytes.TrimRight(cut, " \r\n\t\f\x00"), []byte("%%EOF")) {
				continue
			}
			if v, _ := verdictOf(t, cut); v != formatIncomplete {
				t.Errorf("%s cut to %d of %d bytes: verdict %v, want incomplete", name, n, len(data), v)
				break
			}
		}
	}
}

func TestCompletenessPDFVariants(t *testing.T) {
	pdf := sample(t, "sample.pdf")
	for name, c := range map[string]struct {
		data []byte
		want formatVerdict
	}{
		"trailing CRLF and spaces": {append(append([]byte{}, pdf...), "\r\n  \r\n"...), formatComplete},
		"NUL padding":              {append(append([]byte{}, pdf...), make([]byte, 300)...), formatComplete},
		"incremental update":       {append(append([]byte{}, pdf...), "2 0 obj\n<<>>\nendobj\nxref\n0 1\ntrailer\n<<>>\nstartxref\n769\n%%EOF\n"...), formatComplete},
		"cut inside an update":     {append(append([]byte{}, pdf...), "2 0 obj\n<<>>\nendobj\nxref\n0 1\n"...), formatIncomplete},
		"header after junk":        {append([]byte("junk\n"), pdf...), formatComplete},
		"no %%EOF":                 {[]byte("%PDF-1.7\n1 0 obj\n"), formatIncomplete},
		"%%EOF then garbage":       {append(append([]byte{}, pdf...), "garbage"...), formatIncomplete},
		"unknown type passes":      {[]byte("plain text, no magic"), formatUnknown},
		"JPEG cut in EXIF":         {[]byte{0xFF, 0xD8, 0xFF, 0xE1, 0x10, 0x00, 'E', 'x', 'i', 'f', 0xFF, 0xD9}, formatIncomplete},
		"JPEG padded after EOI":    {append(testJPEG(t, false), 0, 0, 0), formatComplete},
		"TIFF without an IFD yet":  {[]byte("II*\x00\x00\x00\x00\x00"), formatIncomplete},
		"big-endian TIFF, cut IFD": {[]byte("MM\x00*\x00\x00\x00\x08\x00\x05"), formatIncomplete},
	} {
		if v, why := verdictOf(t, c.data); v != c.want {
			t.Errorf("%s: verdict %v (%s), want %v", name, v, why, c.want)
		}
	}
}

// FuzzCompleteness feeds arbitrary bytes (seeded with real and cut files of
// every checked format) to the checks: they must not panic or read out of
// range, must be deterministic, and a strict prefix of a PNG (whose IEND is
// its last chunk) is never complete.
func FuzzCompleteness(f *testing.F) {
	seeds := [][]byte{
		sample(f, "sample.pdf"), sample(f, "sample.jpg"), sample(f, "sample.tiff"),
		testPNG(f), testJPEG(f, false), testTIFF(),
		[]byte("%PDF-1.4\n%%EOF"), []byte("II*\x00\x08\x00\x00\x00\x01\x00"), []byte("MM\x00*\x00\x00\x00\x08"),
		{0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9},
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
		f.Add(s, uint16(len(s)))
	}
	pngData := testPNG(f)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		v1, _, err1 := completeness(bytes.NewReader(data), int64(len(data)))
		v2, _, err2 := completeness(bytes.NewReader(data), int64(len(data)))
		if v1 != v2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("not deterministic: %v/%v %v/%v", v1, v2, err1, err2)
		}
		if int(cut) < len(pngData) && cut >= 8 {
			if v, _ := verdictOf(t, pngData[:cut]); v == formatComplete {
				t.Fatalf("PNG cut to %d bytes reported complete", cut)
			}
		}
		// A complete file stays complete with PDF white space appended
		// only for PDFs (other formats allow what they allow).
		if v1 == formatComplete && bytes.Contains(data[:min(len(data), 1024)], []byte("%PDF-")) {
			padded := append(append([]byte{}, data...), "\r\n"...)
			if v, _ := verdictOf(t, padded); v != formatComplete {
				t.Fatalf("complete PDF with a trailing CRLF is %v", v)
			}
		}
	})
}
