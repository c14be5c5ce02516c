package graph

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// A large message goes to Graph in pieces: a draft made of the message
// without its largest attachments, then each of those through an upload
// session. Every piece is read from the message again (Layout, Skeleton,
// Attachment each take a fresh reader), so nothing larger than the draft
// and one upload chunk is held in memory.

// maxDepth bounds multipart nesting (a hostile message cannot recurse deeply).
const maxDepth = 32

// ErrContent is wrapped by errors about a message Graph cannot be given as
// it is (no retry changes it).
var ErrContent = errors.New("message cannot be split for Graph")

// Part is one attachment that leaves the draft.
type Part struct {
	Path        []int  // child indexes from the root entity down
	Name        string // file name (decoded), or attachment-N
	ContentType string // media type, e.g. application/pdf
	ContentID   string // without <>, for inline parts
	Inline      bool
	Encoded     int64    // bytes as stored in the message (header included)
	Size        int64    // decoded bytes: the attachment's size
	Sum         [32]byte // SHA-256 of the decoded bytes
}

// Layout is a message's plan: which attachments are uploaded separately.
type Layout struct {
	Total    int64 // bytes of the whole message
	Skeleton int64 // bytes of the draft (the message without Parts), approximately
	Parts    []Part
}

type leaf struct {
	Part
	root bool
	file bool // has a file name or attachment disposition: may leave the draft
}

// Plan reads a message once and picks the attachments to upload
// separately, largest first, until the rest fits maxDraft bytes. A message
// whose non-attachment content alone exceeds maxDraft cannot be sent.
func Plan(r io.Reader, maxDraft int64) (*Layout, error) {
	cr := &countReader{r: r}
	br := bufio.NewReaderSize(cr, 64<<10)
	var leaves []leaf
	if err := scanEntity(br, nil, 0, &leaves); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, br); err != nil { // trailing epilogue
		return nil, err
	}
	l := &Layout{Total: cr.n, Skeleton: cr.n}
	cands := slices.Clone(leaves)
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].Encoded > cands[j].Encoded })
	for _, c := range cands {
		if l.Skeleton <= maxDraft {
			break
		}
		if !c.file || c.root || c.Size == 0 {
			continue
		}
		l.Skeleton -= c.Encoded
		l.Parts = append(l.Parts, c.Part)
	}
	if l.Skeleton > maxDraft {
		return nil, fmt.Errorf("%w: without its attachments it still has %d bytes, more than one Graph request carries (%d)", ErrContent, l.Skeleton, maxDraft)
	}
	sort.Slice(l.Parts, func(i, j int) bool { return slices.Compare(l.Parts[i].Path, l.Parts[j].Path) < 0 })
	return l, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// boundaryOf returns the boundary of a multipart entity.
func boundaryOf(h textproto.Header) (string, bool) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return "", false
	}
	return params["boundary"], true
}

// scanEntity reads one entity (header and body) from br, recording its leaves.
func scanEntity(br *bufio.Reader, path []int, depth int, out *[]leaf) error {
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("%w: reading a header: %v", ErrContent, err)
	}
	return scanBody(h, br, path, depth, out)
}

func scanBody(h textproto.Header, body io.Reader, path []int, depth int, out *[]leaf) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: multipart nesting deeper than %d", ErrContent, maxDepth)
	}
	if b, ok := boundaryOf(h); ok {
		mr := textproto.NewMultipartReader(body, b)
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: reading part %v: %v", ErrContent, append(slices.Clone(path), i), err)
			}
			if err := scanBody(p.Header, p, append(slices.Clone(path), i), depth+1, out); err != nil {
				return err
			}
		}
		_, err := io.Copy(io.Discard, body)
		return err
	}
	lf := leaf{Part: describe(h, path, len(*out))}
	lf.root = len(path) == 0
	lf.file = isFile(h)
	var hb bytes.Buffer
	textproto.WriteHeader(&hb, h)
	cr := &countReader{r: body}
	sum := sha256.New()
	n, err := io.Copy(sum, decoder(h, cr))
	if err != nil {
		return fmt.Errorf("%w: decoding part %v: %v", ErrContent, path, err)
	}
	lf.Size, lf.Encoded = n, cr.n+int64(hb.Len())
	copy(lf.Sum[:], sum.Sum(nil))
	*out = append(*out, lf)
	return nil
}

// describe reads a leaf's attachment properties from its header.
func describe(h textproto.Header, path []int, n int) Part {
	p := Part{Path: slices.Clone(path), ContentType: "application/octet-stream"}
	mt, ctParams, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err == nil {
		p.ContentType = mt
	}
	disp, dParams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dParams["filename"]
	if name == "" {
		name = ctParams["name"]
	}
	if dec, err := (&mime.WordDecoder{}).DecodeHeader(name); err == nil {
		name = dec
	}
	name = clean(strings.NewReplacer("/", "_", "\\", "_").Replace(name), 255)
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n+1)
	}
	p.Name = name
	if cid := strings.Trim(strings.TrimSpace(h.Get("Content-Id")), "<>"); cid != "" {
		p.ContentID = clean(cid, 255)
		p.Inline = disp != "attachment"
	}
	return p
}

// isFile: a leaf that is an attachment rather than the message's text.
func isFile(h textproto.Header) bool {
	disp, dParams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	_, ctParams, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return disp == "attachment" || dParams["filename"] != "" || ctParams["name"] != "" || h.Get("Content-Id") != ""
}

// decoder undoes the part's Content-Transfer-Encoding.
func decoder(h textproto.Header, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		// The base64 decoder skips CR and LF; other whitespace is not
		// valid base64 (RFC 2045 6.8) and fails the part.
		return base64.NewDecoder(base64.StdEncoding, &trimTail{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// trimTail drops spaces and tabs some writers leave on base64 lines.
type trimTail struct{ r io.Reader }

func (t *trimTail) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != ' ' && c != '\t' {
			p[j] = c
			j++
		}
	}
	return j, err
}

// Skeleton writes the message without l's Parts: the draft. A multipart
// left without children gets an empty text part; a root that is itself
// uploaded becomes an empty text body.
func Skeleton(r io.Reader, l *Layout, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("%w: reading the header: %v", ErrContent, err)
	}
	return skelBody(h, br, nil, l, w, 0)
}

func (l *Layout) removed(path []int) bool {
	for _, p := range l.Parts {
		if slices.Equal(p.Path, path) {
			return true
		}
	}
	return false
}

func skelBody(h textproto.Header, body io.Reader, path []int, l *Layout, w io.Writer, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: multipart nesting deeper than %d", ErrContent, maxDepth)
	}
	if len(path) == 0 && l.removed(path) {
		for _, k := range []string{"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Id"} {
			h.Del(k)
		}
		h.Set("Content-Type", "text/plain; charset=utf-8")
		return textproto.WriteHeader(w, h)
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	b, ok := boundaryOf(h)
	if !ok {
		_, err := io.Copy(w, body)
		return err
	}
	mr := textproto.NewMultipartReader(body, b)
	kept := 0
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading part %v: %v", ErrContent, append(slices.Clone(path), i), err)
		}
		cp := append(slices.Clone(path), i)
		if l.removed(cp) {
			continue
		}
		kept++
		if _, err := io.WriteString(w, "\r\n--"+b+"\r\n"); err != nil {
			return err
		}
		if err := skelBody(p.Header, p, cp, l, w, depth+1); err != nil {
			return err
		}
	}
	if kept == 0 {
		if _, err := io.WriteString(w, "\r\n--"+b+"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "\r\n--"+b+"--\r\n")
	return err
}

// Attachment calls fn with the decoded content of the part at path, read
// from a fresh copy of the message; fn must consume it before returning.
func Attachment(r io.Reader, path []int, fn func(io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("%w: reading the header: %v", ErrContent, err)
	}
	var body io.Reader = br
	for depth, idx := range path {
		b, ok := boundaryOf(h)
		if !ok || depth > maxDepth {
			return fmt.Errorf("%w: part %v is gone (the message changed)", ErrContent, path)
		}
		mr := textproto.NewMultipartReader(body, b)
		var p *textproto.Part
		for i := 0; i <= idx; i++ {
			if p, err = mr.NextPart(); err != nil {
				return fmt.Errorf("%w: part %v is gone (the message changed): %v", ErrContent, path, err)
			}
		}
		h, body = p.Header, p
	}
	return fn(decoder(h, body))
}
