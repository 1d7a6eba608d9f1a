//! Include expansion: one flat, ordered list of directives across files.

use super::ast::{Node, ParsedFile, Span};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// Longer include chains are reported instead of followed (a guard against
/// pathological trees; cycles are caught separately and exactly).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// Where files come from. Paths are *server paths* (absolute, as written in
/// configs); the implementation maps them (e.g. under a `--root` dir).
pub trait Source {
    fn read(&self, server_path: &str) -> std::io::Result<Vec<u8>>;
    /// glob(3)-style expansion of an absolute server-path pattern, sorted
    /// like nginx (alphabetical). Not called for patterns without `*?[`.
    fn glob(&self, server_pattern: &str) -> std::io::Result<Vec<String>>;
}

/// One directive of the expanded configuration.
#[derive(Debug, Clone)]
pub struct Item {
    /// Index into [`Expanded::files`].
    pub file: usize,
    pub name: String,
    pub args: Vec<String>,
    /// Raw spans (quotes included) of the arguments in that file.
    pub arg_spans: Vec<Span>,
    pub span: Span,
    pub line: u32,
    /// The enclosing block directive; content of an included file gets the
    /// `include` directive's parent.
    pub parent: Option<usize>,
    /// The `include` item that brought this file in (`None` in the root file).
    pub via_include: Option<usize>,
    pub has_block: bool,
}

impl Item {
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    Unreadable,
    Parse,
    IncludeCycle,
}

#[derive(Debug, Clone)]
pub struct Problem {
    /// Server path of the file the problem is in (the including file for
    /// include problems).
    pub file: String,
    /// 1-based; 0 when there is no line (an unreadable root file).
    pub line: u32,
    /// The text of that line, without line ending.
    pub text: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Expanded {
    /// Each file once, in order of first inclusion; the root is `files[0]`
    /// when it could be read.
    pub files: Vec<Arc<ParsedFile>>,
    /// Every directive in nginx's reading order, includes inlined after
    /// the `include` item itself.
    pub items: Vec<Item>,
    pub problems: Vec<Problem>,
}

impl Expanded {
    /// Enclosing block items of `i`, nearest first.
    pub fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.items.get(i).and_then(|it| it.parent), move |&p| {
            self.items[p].parent
        })
    }

    /// The `include` items that led to `i`'s file, nearest first.
    pub fn include_chain(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.items.get(i).and_then(|it| it.via_include), move |&p| {
            self.items[p].via_include
        })
    }

    /// Items directly inside block item `i` (across includes).
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        // Descendants are contiguous and follow their block, so the scan can stop early.
        (i + 1..self.items.len())
            .take_while(move |&j| self.ancestors(j).any(|a| a == i))
            .filter(move |&j| self.items[j].parent == Some(i))
    }

    /// Indices of items named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.items
            .iter()
            .enumerate()
            .filter(move |(_, it)| it.name == name)
            .map(|(i, _)| i)
    }

    pub fn file_of(&self, i: usize) -> &ParsedFile {
        &self.files[self.items[i].file]
    }

    /// Server path of the file holding item `i`.
    pub fn path_of(&self, i: usize) -> &str {
        &self.file_of(i).path
    }

    /// Exact source bytes of the directive (to `;` or the block's `}`).
    pub fn item_bytes(&self, i: usize) -> &[u8] {
        self.file_of(i).text(self.items[i].span)
    }

    /// Exact source text of the directive, lossy UTF-8.
    pub fn item_text(&self, i: usize) -> String {
        String::from_utf8_lossy(self.item_bytes(i)).into_owned()
    }

    /// Text of the line the directive starts on.
    pub fn line_text(&self, i: usize) -> String {
        self.file_of(i).line_text(self.items[i].line)
    }
}

/// Loads a root file and everything it includes.
pub struct Loader<'s> {
    source: &'s dyn Source,
    conf_prefix: String,
    /// Failures are cached too, so an unreadable file included many times is tried once.
    cache: HashMap<String, Result<Arc<ParsedFile>, String>>,
}

/// Collapses `//` and `/./` so one file has one cache/cycle key. `..` is
/// left alone: resolving it lexically would be wrong across symlinks.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    let mut first = true;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !first {
            out.push('/');
        }
        out.push_str(part);
        first = false;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

struct State {
    files: Vec<Arc<ParsedFile>>,
    file_index: HashMap<String, usize>,
    items: Vec<Item>,
    problems: Vec<Problem>,
    /// Files being expanded right now, outermost first (cycle detection).
    stack: Vec<String>,
    reported: HashSet<usize>,
}

impl<'s> Loader<'s> {
    /// `conf_prefix`: the directory of the main nginx.conf; nginx resolves
    /// relative include paths against it, not against the including file.
    pub fn new(source: &'s dyn Source, conf_prefix: &str) -> Self {
        Loader {
            source,
            conf_prefix: conf_prefix.trim_end_matches('/').to_string(),
            cache: HashMap::new(),
        }
    }

    /// The server path an `include` argument refers to.
    pub fn resolve(&self, arg: &str) -> String {
        if arg.starts_with('/') {
            normalize(arg)
        } else {
            normalize(&format!("{}/{}", self.conf_prefix, arg))
        }
    }

    /// Reads and parses a file once; later calls hit the cache.
    pub fn file(&mut self, server_path: &str) -> Result<Arc<ParsedFile>, String> {
        let key = normalize(server_path);
        if let Some(r) = self.cache.get(&key) {
            return r.clone();
        }
        let r = match self.source.read(&key) {
            Ok(bytes) => Ok(Arc::new(ParsedFile::parse(key.clone(), bytes))),
            Err(e) => Err(format!("cannot read {key}: {e}")),
        };
        self.cache.insert(key, r.clone());
        r
    }

    /// Expands `root` with all includes inlined, recursively.
    pub fn expand(&mut self, root: &str) -> Expanded {
        let mut st = State {
            files: Vec::new(),
            file_index: HashMap::new(),
            items: Vec::new(),
            problems: Vec::new(),
            stack: Vec::new(),
            reported: HashSet::new(),
        };
        let root = normalize(root);
        match self.file(&root) {
            Ok(pf) => self.include_file(&mut st, pf, None, None),
            Err(message) => st.problems.push(Problem {
                file: root,
                line: 0,
                text: String::new(),
                kind: ProblemKind::Unreadable,
                message,
            }),
        }
        Expanded {
            files: st.files,
            items: st.items,
            problems: st.problems,
        }
    }

    fn include_file(
        &mut self,
        st: &mut State,
        pf: Arc<ParsedFile>,
        parent: Option<usize>,
        via: Option<usize>,
    ) {
        let fidx = match st.file_index.get(&pf.path) {
            Some(&i) => i,
            None => {
                st.files.push(pf.clone());
                st.file_index.insert(pf.path.clone(), st.files.len() - 1);
                st.files.len() - 1
            }
        };
        if st.reported.insert(fidx) {
            for e in &pf.errors {
                st.problems.push(Problem {
                    file: pf.path.clone(),
                    line: e.line,
                    text: pf.line_text(e.line),
                    kind: ProblemKind::Parse,
                    message: e.message.clone(),
                });
            }
        }
        st.stack.push(pf.path.clone());
        self.items_of(st, &pf, fidx, &pf.nodes, parent, via);
        st.stack.pop();
    }

    fn items_of(
        &mut self,
        st: &mut State,
        pf: &ParsedFile,
        fidx: usize,
        nodes: &[Node],
        parent: Option<usize>,
        via: Option<usize>,
    ) {
        for node in nodes {
            let Node::Directive(d) = node else { continue };
            let idx = st.items.len();
            st.items.push(Item {
                file: fidx,
                name: d.name.value.clone(),
                args: d.args.iter().map(|w| w.value.clone()).collect(),
                arg_spans: d.args.iter().map(|w| w.span).collect(),
                span: d.span,
                line: d.line,
                parent,
                via_include: via,
                has_block: d.block.is_some(),
            });
            match &d.block {
                Some(b) => self.items_of(st, pf, fidx, &b.children, Some(idx), via),
                None if d.name.value == "include" => self.include(st, pf, idx, parent),
                None => {}
            }
        }
    }

    /// Inlines the files of `include` item `idx` found in `pf`.
    fn include(&mut self, st: &mut State, pf: &ParsedFile, idx: usize, parent: Option<usize>) {
        let item = &st.items[idx];
        let line = item.line;
        let problem = |kind, message: String| Problem {
            file: pf.path.clone(),
            line,
            text: pf.line_text(line),
            kind,
            message,
        };
        if item.args.len() != 1 {
            st.problems.push(problem(
                ProblemKind::Parse,
                "invalid number of arguments in \"include\"".into(),
            ));
            return;
        }
        let target = self.resolve(&item.args[0]);
        let paths = if has_glob(&target) {
            match self.source.glob(&target) {
                Ok(mut v) => {
                    v.sort();
                    v
                }
                Err(e) => {
                    st.problems.push(problem(
                        ProblemKind::Unreadable,
                        format!("cannot expand {target}: {e}"),
                    ));
                    return;
                }
            }
        } else {
            vec![target]
        };
        for p in paths {
            let p = normalize(&p);
            if st.stack.contains(&p) {
                let chain = st
                    .stack
                    .iter()
                    .chain([&p])
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" -> ");
                st.problems.push(problem(
                    ProblemKind::IncludeCycle,
                    format!("include cycle: {chain}"),
                ));
                continue;
            }
            if st.stack.len() >= MAX_INCLUDE_DEPTH {
                let msg = format!("includes nested deeper than {MAX_INCLUDE_DEPTH}, not following {p}");
                st.problems.push(problem(ProblemKind::IncludeCycle, msg));
                continue;
            }
            match self.file(&p) {
                Ok(child) => self.include_file(st, child, parent, Some(idx)),
                Err(msg) => st.problems.push(problem(ProblemKind::Unreadable, msg)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("/etc//nginx/./a.conf"), "/etc/nginx/a.conf");
        assert_eq!(normalize("/etc/nginx/../x"), "/etc/nginx/../x");
        assert_eq!(normalize("a/b/"), "a/b");
    }

    #[test]
    fn resolve_against_prefix() {
        let src = crate::nginx::MemSource::new();
        let l = Loader::new(&src, "/etc/nginx/");
        assert_eq!(l.resolve("mime.types"), "/etc/nginx/mime.types");
        assert_eq!(l.resolve("/abs/x.conf"), "/abs/x.conf");
    }
}
