//! Tokenizer + tree builder following nginx's `ngx_conf_read_token`, made
//! total: it keeps going after errors so the tree still covers every byte.
//!
//! Coverage invariant: each frame has a `cursor`; a directive pushed into a
//! frame is preceded by `Trivia(cursor..directive.start)` and moves the
//! cursor to its end. Whatever we skip (comments, template lines, bad tokens,
//! discarded statements) is simply left behind the cursor and ends up in the
//! next trivia, so no path through the parser can drop a byte.

use super::ast::{line_starts, Block, Directive, Node, ParseError, ParsedFile, Span, Word};

/// Deeper `{` nesting is kept as trivia, which bounds the recursion in
/// print/walk/drop on hostile input. Real configs nest a handful of levels.
pub const MAX_DEPTH: usize = 100;

struct Head {
    name: Word,
    args: Vec<Word>,
    line: u32,
    open: Span,
}

struct Frame {
    /// `None` for the file itself and for "junk" blocks (a `{` with no name).
    head: Option<Head>,
    children: Vec<Node>,
    cursor: usize,
}

impl Frame {
    fn push_directive(&mut self, d: Directive) {
        if d.span.start > self.cursor {
            self.children
                .push(Node::Trivia(Span::new(self.cursor, d.span.start)));
        }
        self.cursor = d.span.end;
        self.children.push(Node::Directive(d));
    }
    fn finish_trivia(&mut self, end: usize) {
        if end > self.cursor {
            self.children.push(Node::Trivia(Span::new(self.cursor, end)));
            self.cursor = end;
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("\"{}\"", b as char)
    } else {
        format!("\\x{b:02x}")
    }
}

/// nginx's escape processing: `\"`, `\'`, `\\` drop the backslash, `\t`,
/// `\r`, `\n` become control characters, anything else keeps the backslash.
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            let repl = match raw[i + 1] {
                b'"' | b'\'' | b'\\' => Some(raw[i + 1]),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                _ => None,
            };
            if let Some(c) = repl {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

struct Parser<'a> {
    src: &'a [u8],
    starts: Vec<usize>,
    errors: Vec<ParseError>,
    /// Start of a quoted word that ran into end of file.
    open_quote: Option<usize>,
}

impl Parser<'_> {
    fn line_of(&self, off: usize) -> u32 {
        match self.starts.binary_search(&off) {
            Ok(i) => i as u32 + 1,
            Err(i) => i as u32,
        }
    }

    fn error(&mut self, span: Span, message: impl Into<String>) {
        let line = self.line_of(span.start);
        self.errors.push(ParseError {
            line,
            span,
            message: message.into(),
        });
    }

    /// A DirectAdmin template token at the start of a statement: `|$ … DONE|`
    /// (may span lines) or `|…|` closed on the same line and followed by
    /// whitespace or end of file. Returns its end.
    fn template_end(&self, i: usize) -> Option<usize> {
        let src = self.src;
        if src.get(i + 1) == Some(&b'$') {
            let rest = &src[i + 2..];
            let end = rest
                .windows(5)
                .position(|w| w == b"DONE|")
                .map_or(src.len(), |p| i + 2 + p + 5);
            return Some(end);
        }
        // One scan that stops at the first `|` or newline keeps this linear
        // even on a huge single line full of `|`.
        let close = src[i + 1..].iter().position(|&b| b == b'|' || b == b'\n')? + i + 1;
        if src[close] != b'|' {
            return None;
        }
        match src.get(close + 1) {
            None => Some(close + 1),
            Some(&b) if is_space(b) => Some(close + 1),
            Some(_) => None,
        }
    }

    /// Lexes one word starting at `i` (not whitespace, `;`, `{`, `}` or `#`).
    /// Returns the word (None if a quote is unterminated) and where lexing stopped.
    fn word(&mut self, i: usize) -> (Option<Word>, usize) {
        let src = self.src;
        let n = src.len();
        let first = src[i];
        if first == b'"' || first == b'\'' {
            let mut j = i + 1;
            while j < n {
                match src[j] {
                    b'\\' => j += 2,
                    b if b == first => break,
                    _ => j += 1,
                }
            }
            if j >= n {
                // Reported once, with the statement, at end of file.
                self.open_quote = Some(i);
                return (None, n);
            }
            let w = Word {
                span: Span::new(i, j + 1),
                value: unescape(&src[i + 1..j]),
                quoted: true,
            };
            // nginx wants a separator right after a closing quote (`)` counts,
            // for `if ($a = "b")`).
            if let Some(&b) = src.get(j + 1) {
                if !(is_space(b) || matches!(b, b';' | b'{' | b')')) {
                    self.error(Span::new(j + 1, j + 2), format!("unexpected {}", show(b)));
                }
            }
            return (Some(w), j + 1);
        }
        let mut j = i;
        // `${` keeps the `{` in the word (nginx's variable flag).
        let mut variable = false;
        while j < n {
            let b = src[j];
            if b == b'{' && variable {
                j += 1;
                continue;
            }
            variable = false;
            match b {
                b'\\' => j += 2,
                b'$' => {
                    variable = true;
                    j += 1;
                }
                b';' | b'{' => break,
                b if is_space(b) => break,
                _ => j += 1,
            }
        }
        let j = j.min(n);
        (
            Some(Word {
                span: Span::new(i, j),
                value: unescape(&src[i..j]),
                quoted: false,
            }),
            j,
        )
    }

    fn run(mut self) -> (Vec<Node>, Vec<ParseError>, Vec<usize>) {
        let src = self.src;
        let n = src.len();
        let mut stack = vec![Frame {
            head: None,
            children: Vec::new(),
            cursor: 0,
        }];
        let mut words: Vec<Word> = Vec::new();
        let mut i = 0;
        loop {
            // Separators and comments; `#` only counts at a token start.
            while i < n {
                match src[i] {
                    b if is_space(b) => i += 1,
                    b'#' => i = src[i..].iter().position(|&b| b == b'\n').map_or(n, |p| i + p),
                    _ => break,
                }
            }
            if i >= n {
                break;
            }
            match src[i] {
                b';' => {
                    if words.is_empty() {
                        self.error(Span::new(i, i + 1), "unexpected \";\"");
                    } else {
                        let name = words.remove(0);
                        let span = Span::new(name.span.start, i + 1);
                        let line = self.line_of(span.start);
                        let args = std::mem::take(&mut words);
                        let d = Directive {
                            name,
                            args,
                            span,
                            line,
                            block: None,
                        };
                        stack.last_mut().expect("file frame").push_directive(d);
                    }
                    i += 1;
                }
                b'{' => {
                    let open = Span::new(i, i + 1);
                    let head = if words.is_empty() {
                        self.error(open, "unexpected \"{\"");
                        None
                    } else if stack.len() > MAX_DEPTH {
                        self.error(open, "blocks nested too deeply");
                        words.clear();
                        None
                    } else {
                        let name = words.remove(0);
                        let line = self.line_of(name.span.start);
                        Some(Head {
                            name,
                            args: std::mem::take(&mut words),
                            line,
                            open,
                        })
                    };
                    stack.push(Frame {
                        head,
                        children: Vec::new(),
                        cursor: i + 1,
                    });
                    i += 1;
                }
                b'}' => {
                    let close = Span::new(i, i + 1);
                    if !words.is_empty() || stack.len() == 1 {
                        self.error(close, "unexpected \"}\"");
                    }
                    // An unfinished statement stays behind as trivia.
                    words.clear();
                    if stack.len() > 1 {
                        let frame = stack.pop().expect("inner frame");
                        close_frame(frame, Some(close), i, stack.last_mut().expect("file frame"));
                    }
                    i += 1;
                }
                b'|' if words.is_empty() => match self.template_end(i) {
                    Some(end) => i = end,
                    None => {
                        let (w, next) = self.word(i);
                        words.extend(w);
                        i = next;
                    }
                },
                _ => {
                    let (w, next) = self.word(i);
                    words.extend(w);
                    i = next;
                }
            }
        }
        if let Some(start) = words.first().map(|w| w.span.start).or(self.open_quote) {
            self.error(
                Span::new(start, n),
                "unexpected end of file, expecting \";\" or \"}\"",
            );
        }
        while stack.len() > 1 {
            let frame = stack.pop().expect("inner frame");
            if frame.head.is_some() && stack.len() == 1 {
                // One error for the outermost unclosed block is enough.
                self.error(Span::new(n, n), "unexpected end of file, expecting \"}\"");
            }
            close_frame(frame, None, n, stack.last_mut().expect("file frame"));
        }
        let mut top = stack.pop().expect("file frame");
        top.finish_trivia(n);
        (top.children, self.errors, self.starts)
    }
}

/// Ends a block whose content runs to `end` (the `}` or end of file) and
/// hands it to its parent. Junk blocks hand over nothing: their bytes become
/// the parent's trivia.
fn close_frame(mut frame: Frame, close: Option<Span>, end: usize, parent: &mut Frame) {
    let Some(head) = frame.head.take() else { return };
    frame.finish_trivia(end);
    let span_end = close.map_or(end, |c| c.end);
    let d = Directive {
        span: Span::new(head.name.span.start, span_end),
        name: head.name,
        args: head.args,
        line: head.line,
        block: Some(Block {
            open: head.open,
            close,
            children: frame.children,
        }),
    };
    parent.push_directive(d);
}

pub(crate) fn parse(path: String, src: Vec<u8>) -> ParsedFile {
    let starts = line_starts(&src);
    let (nodes, errors, line_starts) = Parser {
        src: &src,
        starts,
        errors: Vec::new(),
        open_quote: None,
    }
    .run();
    ParsedFile {
        path,
        src,
        nodes,
        errors,
        line_starts,
    }
}
