package scanfolder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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
