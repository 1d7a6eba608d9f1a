//! The lossless tree: every byte of `ParsedFile::src` is covered, in order, by
//! exactly one node, so `print()` can rebuild the file from the tree alone.

/// Byte range into [`ParsedFile::src`], `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One token of a directive.
#[derive(Debug, Clone)]
pub struct Word {
    /// Raw bytes, including the quotes of a quoted word.
    pub span: Span,
    /// Quotes removed and escapes processed the way nginx does; lossy UTF-8.
    pub value: String,
    pub quoted: bool,
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub name: Word,
    pub args: Vec<Word>,
    /// Name start .. end of `;`, or of the closing `}` (end of file if unclosed).
    pub span: Span,
    /// 1-based line of the name.
    pub line: u32,
    pub block: Option<Block>,
}

#[derive(Debug, Clone)]
pub struct Block {
    /// The `{`.
    pub open: Span,
    /// The `}`, or `None` when the file ended first.
    pub close: Option<Span>,
    /// Cover exactly the bytes between `open` and `close` (or end of file).
    pub children: Vec<Node>,
}

#[derive(Debug, Clone)]
pub enum Node {
    Directive(Directive),
    /// Whitespace, comments, DirectAdmin template lines and unparseable bytes.
    Trivia(Span),
}

impl Node {
    pub fn span(&self) -> Span {
        match self {
            Node::Directive(d) => d.span,
            Node::Trivia(s) => *s,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ParseError {
    pub line: u32,
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ParsedFile {
    pub path: String,
    pub src: Vec<u8>,
    pub nodes: Vec<Node>,
    pub errors: Vec<ParseError>,
    /// Offsets where each line starts; `line_starts[0] == 0`.
    pub(crate) line_starts: Vec<usize>,
}

impl Directive {
    pub fn name(&self) -> &str {
        &self.name.value
    }
    /// Argument values (unquoted).
    pub fn arg_values(&self) -> Vec<&str> {
        self.args.iter().map(|w| w.value.as_str()).collect()
    }
    /// Child directives of the block (empty for simple directives).
    pub fn children(&self) -> impl Iterator<Item = &Directive> {
        self.block
            .iter()
            .flat_map(|b| b.children.iter())
            .filter_map(|n| match n {
                Node::Directive(d) => Some(d),
                Node::Trivia(_) => None,
            })
    }
}

pub(crate) fn line_starts(src: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        src.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    v
}

impl ParsedFile {
    /// Rebuilds the file from the tree. Block directives are printed from
    /// their parts (head, children, close) rather than from their whole span,
    /// so a gap in the tree shows up as a difference from `src`.
    pub fn print(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.src.len());
        self.print_nodes(&self.nodes, &mut out);
        out
    }

    fn print_nodes(&self, nodes: &[Node], out: &mut Vec<u8>) {
        for n in nodes {
            match n {
                Node::Trivia(s) => out.extend_from_slice(self.text(*s)),
                Node::Directive(d) => match &d.block {
                    None => out.extend_from_slice(self.text(d.span)),
                    Some(b) => {
                        out.extend_from_slice(self.text(Span::new(d.span.start, b.open.end)));
                        self.print_nodes(&b.children, out);
                        if let Some(c) = b.close {
                            out.extend_from_slice(self.text(c));
                        }
                    }
                },
            }
        }
    }

    /// 1-based line of a byte offset (offsets past the end map to the last line).
    pub fn line_of(&self, offset: usize) -> u32 {
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        (idx + 1) as u32
    }

    /// Bytes of a span, clamped to the source so a stale span cannot panic.
    pub fn text(&self, span: Span) -> &[u8] {
        let end = span.end.min(self.src.len());
        let start = span.start.min(end);
        &self.src[start..end]
    }

    pub fn text_lossy(&self, span: Span) -> String {
        String::from_utf8_lossy(self.text(span)).into_owned()
    }

    /// The text of a 1-based line without its line ending (empty if out of range).
    pub fn line_text(&self, line: u32) -> String {
        let i = (line as usize).wrapping_sub(1);
        let Some(&start) = self.line_starts.get(i) else {
            return String::new();
        };
        let end = self.line_starts.get(i + 1).map_or(self.src.len(), |&e| e - 1);
        let mut s = self.text(Span::new(start, end));
        if s.last() == Some(&b'\r') {
            s = &s[..s.len() - 1];
        }
        String::from_utf8_lossy(s).into_owned()
    }

    /// Number of lines (a final line without newline counts; an empty file has 1).
    pub fn line_count(&self) -> u32 {
        self.line_starts.len() as u32
    }

    /// Every directive depth-first, with its enclosing block directives
    /// (outermost first).
    pub fn walk(&self, f: &mut dyn FnMut(&[&Directive], &Directive)) {
        let mut stack = Vec::new();
        walk_nodes(&self.nodes, &mut stack, f);
    }

    /// The source with each span replaced by its bytes. Edits may come in
    /// any order; overlapping spans or spans past the end are refused, so a
    /// caller cannot silently corrupt a file.
    pub fn splice(&self, edits: &[(Span, Vec<u8>)]) -> Result<Vec<u8>, String> {
        let mut order: Vec<&(Span, Vec<u8>)> = edits.iter().collect();
        order.sort_by_key(|(s, _)| (s.start, s.end));
        let mut out = Vec::with_capacity(self.src.len());
        let mut at = 0;
        for (span, bytes) in order {
            if span.start < at || span.end < span.start || span.end > self.src.len() {
                return Err(format!(
                    "edit {}..{} overlaps or is out of range",
                    span.start, span.end
                ));
            }
            out.extend_from_slice(&self.src[at..span.start]);
            out.extend_from_slice(bytes);
            at = span.end;
        }
        out.extend_from_slice(&self.src[at..]);
        Ok(out)
    }

    /// Top-level directives.
    pub fn directives(&self) -> impl Iterator<Item = &Directive> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Directive(d) => Some(d),
            Node::Trivia(_) => None,
        })
    }
}

fn walk_nodes<'a>(
    nodes: &'a [Node],
    stack: &mut Vec<&'a Directive>,
    f: &mut dyn FnMut(&[&Directive], &Directive),
) {
    for n in nodes {
        if let Node::Directive(d) = n {
            f(stack, d);
            if let Some(b) = &d.block {
                stack.push(d);
                walk_nodes(&b.children, stack, f);
                stack.pop();
            }
        }
    }
}
