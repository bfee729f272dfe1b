package report

import (
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

// Page builds one self-contained HTML document: styles inline and every
// image embedded as a data URI, so the file can be mailed, archived or
// opened from a cluster's scratch space without the files beside it.
type Page struct {
	title string
	body  strings.Builder
	toc   []tocEntry
}

type tocEntry struct {
	id, text string
}

// Figure is one embedded PNG with its caption.
type Figure struct {
	PNG     []byte
	Caption string
	// Wide figures (montages) keep their natural size; plots shrink to fit three in a row.
	Wide bool
}

// NewPage starts a document.
func NewPage(title string) *Page { return &Page{title: title} }

// Section starts a top-level section listed in the page's contents.
func (p *Page) Section(title string) {
	id := fmt.Sprintf("s%d", len(p.toc)+1)
	p.toc = append(p.toc, tocEntry{id, title})
	fmt.Fprintf(&p.body, "<h2 id=%q>%s</h2>\n", id, html.EscapeString(title))
}

// Heading adds a sub-heading.
func (p *Page) Heading(text string) {
	fmt.Fprintf(&p.body, "<h3>%s</h3>\n", html.EscapeString(text))
}

// Para adds a paragraph of plain text.
func (p *Page) Para(text string) {
	fmt.Fprintf(&p.body, "<p>%s</p>\n", html.EscapeString(text))
}

// Warning adds a highlighted paragraph that readers must not miss.
func (p *Page) Warning(text string) {
	fmt.Fprintf(&p.body, "<p class=\"warn\">%s</p>\n", html.EscapeString(text))
}

// Table adds a table; the first column is shown as row headers.
func (p *Page) Table(header []string, rows [][]string) {
	p.body.WriteString("<table>\n<thead><tr>")
	for _, h := range header {
		fmt.Fprintf(&p.body, "<th>%s</th>", html.EscapeString(h))
	}
	p.body.WriteString("</tr></thead>\n<tbody>\n")
	for _, r := range rows {
		p.body.WriteString("<tr>")
		for i, c := range r {
			tag := "td"
			if i == 0 {
				tag = "th"
			}
			fmt.Fprintf(&p.body, "<%s>%s</%s>", tag, html.EscapeString(c), tag)
		}
		p.body.WriteString("</tr>\n")
	}
	p.body.WriteString("</tbody></table>\n")
}

// Figures adds images side by side (wrapping on narrow screens).
func (p *Page) Figures(figs ...Figure) {
	p.body.WriteString("<div class=\"figs\">\n")
	for _, f := range figs {
		if len(f.PNG) == 0 {
			continue
		}
		class := "plot"
		if f.Wide {
			class = "wide"
		}
		fmt.Fprintf(&p.body, "<figure class=%q><img alt=%q src=\"data:image/png;base64,%s\"><figcaption>%s</figcaption></figure>\n",
			class, f.Caption, base64.StdEncoding.EncodeToString(f.PNG), html.EscapeString(f.Caption))
	}
	p.body.WriteString("</div>\n")
}

// Details adds a collapsed block of preformatted text (configurations, logs).
func (p *Page) Details(summary, text string) {
	fmt.Fprintf(&p.body, "<details><summary>%s</summary><pre>%s</pre></details>\n", html.EscapeString(summary), html.EscapeString(text))
}

const style = `body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child{text-align:left}thead th{background:#f0f0f0;text-align:center}tbody tr:nth-child(even){background:#fafafa}
.warn{background:#fff3cd;border-left:4px solid #e0a800;padding:.6em 1em}
.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figure.plot{flex:0 1 380px}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.8em;color:#555;max-width:620px;overflow-wrap:anywhere}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}
nav ol{columns:2}footer{margin-top:3em;color:#777;font-size:.8em}`

// Write writes the finished document.
func (p *Page) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n",
		html.EscapeString(p.title), style)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", html.EscapeString(p.title))
	if len(p.toc) > 1 {
		b.WriteString("<nav><ol>\n")
		for _, t := range p.toc {
			fmt.Fprintf(&b, "<li><a href=\"#%s\">%s</a></li>\n", t.id, html.EscapeString(t.text))
		}
		b.WriteString("</ol></nav>\n")
	}
	b.WriteString(p.body.String())
	fmt.Fprintf(&b, "<footer>written by maddr on %s</footer>\n</body>\n</html>\n", time.Now().UTC().Format(time.RFC3339))
	_, err := io.WriteString(w, b.String())
	return err
}
