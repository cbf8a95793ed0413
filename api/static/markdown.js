// A small Markdown renderer that builds DOM nodes only: text from the model is always set with textContent or
// createTextNode, never parsed as HTML, so a model that emits <script> or <img onerror> shows those characters
// and runs nothing. Supports what model answers use: headings, paragraphs, fenced code, inline code, bold,
// italics, links (http, https, mailto only), ordered and unordered lists, block quotes, rules.
"use strict";

const SAFE_LINK = /^(https?:|mailto:)/i;

function appendInline(parent, text) {
  // Order matters: code spans first (their content is literal), then links, bold, italics.
  // Underscore emphasis only at word boundaries, as CommonMark does (snake_case and __dunder__ stay text).
  const pattern =
    /(`+)([\s\S]*?)\1|\[([^\]\n]+)\]\(([^)\s]+)\)|\*\*([^*\n]+)\*\*|(?<!\w)__([^_\n]+)__(?!\w)|\*([^*\n]+)\*|(?<!\w)_([^_\n]+)_(?!\w)/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) {
      const code = document.createElement("code");
      code.textContent = m[2];
      parent.appendChild(code);
    } else if (m[3] !== undefined) {
      if (SAFE_LINK.test(m[4])) {
        const a = document.createElement("a");
        a.href = m[4];
        a.rel = "noopener noreferrer nofollow";
        a.target = "_blank";
        appendInline(a, m[3]);
        parent.appendChild(a);
      } else {
        parent.appendChild(document.createTextNode(m[0]));
      }
    } else if (m[5] !== undefined || m[6] !== undefined) {
      const b = document.createElement("strong");
      appendInline(b, m[5] ?? m[6]);
      parent.appendChild(b);
    } else {
      const i = document.createElement("em");
      appendInline(i, m[7] ?? m[8]);
      parent.appendChild(i);
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function renderMarkdown(source) {
  const root = document.createDocumentFragment();
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) {
      const p = document.createElement("p");
      appendInline(p, paragraph.join("\n"));
      root.appendChild(p);
      paragraph = [];
    }
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+-]*)/);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // the closing fence (an unclosed one runs to the end while the answer streams)
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.appendChild(code);
      root.appendChild(pre);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      flush();
      const h = document.createElement(`h${heading[1].length}`);
      appendInline(h, heading[2]);
      root.appendChild(h);
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      root.appendChild(document.createElement("hr"));
      i++;
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        const li = document.createElement("li");
        appendInline(li, m[2]);
        list.appendChild(li);
        i++;
      }
      root.appendChild(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quote = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quote.push(lines[i++].replace(/^\s*>\s?/, ""));
      const bq = document.createElement("blockquote");
      bq.appendChild(renderMarkdown(quote.join("\n")));
      root.appendChild(bq);
      continue;
    }
    if (!line.trim()) {
      flush();
    } else {
      paragraph.push(line);
    }
    i++;
  }
  flush();
  return root;
}
