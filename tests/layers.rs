//! The layers of `src/` are one-way: a module uses only its own layer and those below it.
//!
//! The layers, and the crossings not yet removed, are listed once, in `docs/design/layers.md`;
//! this test reads that table and every `crate::…`, `super::…` and `self::…` path in the
//! library's code (comments and test modules aside), and fails on a path that reaches up. It also
//! fails on a listed crossing that no longer occurs, so that the list says exactly what is left.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const DOC: &str = "docs/design/layers.md";

/// The table of `docs/design/layers.md`: the layers from the bottom up, and the crossings left.
struct Table {
    /// (layer name, module paths), from the bottom up: a layer's rank is its position.
    layers: Vec<(String, Vec<String>)>,
    /// (file, module it reaches) pairs still allowed to cross upwards.
    debts: BTreeSet<(String, String)>,
}

fn table(root: &Path) -> Table {
    let text = fs::read_to_string(root.join(DOC)).expect("the layers document exists");
    let block = |tag: &str| -> Vec<String> {
        let open = format!("```text {tag}");
        let start = text
            .find(&open)
            .unwrap_or_else(|| panic!("{DOC} has a block opened by `{open}`"));
        let body = &text[start + open.len()..];
        let end = body.find("```").expect("the block is closed");
        body[..end]
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim().to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    };
    let layers = block("layers")
        .into_iter()
        .map(|line| {
            let (name, modules) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("a layer line is `name: modules…`, not `{line}`"));
            let modules = modules.split_whitespace().map(str::to_owned).collect();
            (name.trim().to_owned(), modules)
        })
        .collect();
    let debts = block("crossings")
        .into_iter()
        .map(|line| {
            let (file, module) = line
                .split_once("->")
                .unwrap_or_else(|| panic!("a crossing is `file -> module`, not `{line}`"));
            (file.trim().to_owned(), module.trim().to_owned())
        })
        .collect();
    Table { layers, debts }
}

impl Table {
    /// The layer of a module: the one listing the longest prefix of its path.
    fn layer(&self, module: &[String]) -> Option<(usize, &str)> {
        let mut best: Option<(usize, usize, &str)> = None;
        for (rank, (name, modules)) in self.layers.iter().enumerate() {
            for listed in modules {
                let listed: Vec<&str> = listed.split("::").collect();
                let matches = listed.len() <= module.len()
                    && listed.iter().zip(module).all(|(a, b)| *a == b.as_str());
                if matches && best.is_none_or(|(len, _, _)| listed.len() > len) {
                    best = Some((listed.len(), rank, name));
                }
            }
        }
        best.map(|(_, rank, name)| (rank, name))
    }
}

/// Every library source file (the binary and the tests are users of the crate, not layers).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/event/chain.rs` is the module `event::chain`; `src/lib.rs` is the root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

/// The code of a file without its comments, string literals and `#[cfg(test)]` items, so that
/// only what is compiled into the library is checked. Line breaks are kept for line numbers.
fn code(text: &str) -> String {
    without_tests(&without_literals(text))
}

/// `text` without its comments and string and character literals (their line breaks kept).
fn without_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let skipped = comment(rest)
            .or_else(|| raw_string(rest))
            .or_else(|| char_literal(rest))
            .or_else(|| string_literal(rest));
        i += match skipped {
            Some(end) => keep_lines(&mut out, &rest[..end]),
            None => keep_char(&mut out, rest),
        };
    }
    out
}

/// `code` without its `#[cfg(test)]` items: each up to its closing brace or semicolon. Runs on
/// code without literals, so that a brace in a string is not counted.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        i += match rest.strip_prefix("#[cfg(test)]") {
            Some(item) => keep_lines(&mut out, &rest[..rest.len() - item.len() + item_end(item)]),
            None => keep_char(&mut out, rest),
        };
    }
    out
}

/// Keeps only the line breaks of `skipped`; returns its length.
fn keep_lines(out: &mut String, skipped: &str) -> usize {
    out.extend(skipped.chars().filter(|c| *c == '\n'));
    skipped.len()
}

/// Keeps the first character of `rest`; returns its length.
fn keep_char(out: &mut String, rest: &str) -> usize {
    let c = rest.chars().next().expect("not empty");
    out.push(c);
    c.len_utf8()
}

/// The length of the item at the start of `rest`: up to its closing brace, or its semicolon.
fn item_end(rest: &str) -> usize {
    let mut depth = 0usize;
    for (j, byte) in rest.bytes().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' if depth <= 1 => return j + 1,
            b'}' => depth -= 1,
            b';' if depth == 0 => return j + 1,
            _ => {}
        }
    }
    rest.len()
}

/// The length of the comment (`// …` up to the line break, `/* … */`) at the start of `rest`.
fn comment(rest: &str) -> Option<usize> {
    if rest.starts_with("//") {
        Some(rest.find('\n').unwrap_or(rest.len()))
    } else if rest.starts_with("/*") {
        Some(rest.find("*/").map_or(rest.len(), |e| e + 2))
    } else {
        None
    }
}

/// The length of the string literal (`"…"`, escapes included) at the start of `rest`.
fn string_literal(rest: &str) -> Option<usize> {
    let body = rest.strip_prefix('"')?;
    let mut escaped = false;
    for (j, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(j + 2),
            _ => {}
        }
    }
    Some(rest.len())
}

/// The length of the raw string literal (`r"…"`, `br#"…"#`) at the start of `rest`, if one is.
fn raw_string(rest: &str) -> Option<usize> {
    let after = rest.strip_prefix("br").or_else(|| rest.strip_prefix('r'))?;
    let hashes = after.len() - after.trim_start_matches('#').len();
    let body = after[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(rest.len() - body.len() + end + close.len())
}

/// The length of the character literal (`'"'`, `b'{'`, `'\''`) at the start of `rest`, if one
/// is; a lifetime (`'a`) is not one.
fn char_literal(rest: &str) -> Option<usize> {
    let body = rest
        .strip_prefix("b'")
        .or_else(|| rest.strip_prefix('\''))?;
    let prefix = rest.len() - body.len();
    let mut chars = body.char_indices();
    let (_, first) = chars.next()?;
    let after = if first == '\\' {
        body.get(2..)?.find('\'')? + 2
    } else {
        let (at, quote) = chars.next()?;
        (quote == '\'').then_some(at)?
    };
    Some(prefix + after + 1)
}

/// The paths a `crate::…`, `super::…` or `self::…` reference names, each with its line, with use
/// trees (`crate::{a::B, c::{D, E}}`) expanded.
fn references(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let boundary = at == 0
                || !(bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            if !boundary {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            let head = start.trim_end_matches("::").to_owned();
            let mut pos = at + start.len();
            for path in tree(code, &mut pos, vec![head]) {
                found.push((line, path));
            }
        }
    }
    found
}

/// Parses a path or use tree at `pos`, below `prefix`.
fn tree(code: &str, pos: &mut usize, prefix: Vec<String>) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let skip_space = |pos: &mut usize| {
        while *pos < bytes.len() && bytes[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
    };
    let mut path = prefix;
    loop {
        skip_space(pos);
        if *pos < bytes.len() && bytes[*pos] == b'{' {
            *pos += 1;
            let mut all = Vec::new();
            loop {
                skip_space(pos);
                if *pos >= bytes.len() {
                    return all;
                }
                if bytes[*pos] == b'}' {
                    *pos += 1;
                    return all;
                }
                if bytes[*pos] == b',' {
                    *pos += 1;
                    continue;
                }
                let before = *pos;
                all.extend(tree(code, pos, path.clone()));
                skip_space(pos);
                // `x as y` renames: the name is what matters.
                if code[*pos..].starts_with("as ") {
                    *pos += 3;
                    while *pos < bytes.len()
                        && (bytes[*pos].is_ascii_alphanumeric() || bytes[*pos] == b'_')
                    {
                        *pos += 1;
                    }
                }
                if *pos == before {
                    *pos += 1;
                }
            }
        }
        let begin = *pos;
        while *pos < bytes.len() && (bytes[*pos].is_ascii_alphanumeric() || bytes[*pos] == b'_') {
            *pos += 1;
        }
        if *pos > begin {
            path.push(code[begin..*pos].to_owned());
        }
        if code[*pos..].starts_with("::") {
            *pos += 2;
            continue;
        }
        return vec![path];
    }
}

/// The names the crate root re-exports, with the module each comes from.
fn root_exports(lib: &str) -> BTreeMap<String, Vec<String>> {
    let mut exports = BTreeMap::new();
    let lib = code(lib);
    for (_, path) in references(&lib.replace("pub use ", "pub use crate::")) {
        if let Some((name, module)) = path.split_last() {
            exports.insert(name.clone(), module[1..].to_vec());
        }
    }
    exports
}

/// The module a reference from `module` lands in: the longest prefix of its absolute path that
/// is a module of the crate.
fn target(
    module: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    exports: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut absolute: Vec<String> = match path[0].as_str() {
        "crate" => Vec::new(),
        // In `a/b.rs` (module `a::b`), `self` is `a::b` and `super` is `a`.
        "self" => module.to_vec(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        _ => unreachable!(),
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        absolute.pop();
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().cloned());
    // A name the crate root re-exports (`crate::Error`, `crate::Error::Config`) is its module's.
    if let Some(module) = absolute.first().and_then(|name| exports.get(name)) {
        return module.clone();
    }
    while !absolute.is_empty() && !modules.contains(&absolute) {
        absolute.pop();
    }
    absolute
}

#[derive(Debug)]
struct Crossing {
    file: String,
    line: usize,
    from: String,
    to: String,
    module: String,
    path: String,
}

fn crossings(root: &Path, table: &Table) -> Vec<Crossing> {
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let exports = root_exports(&fs::read_to_string(src.join("lib.rs")).expect("lib.rs"));
    let mut found = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module.is_empty() || module.last().is_some_and(|m| m == "tests" || m == "loom") {
            continue;
        }
        let shown = file
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let (rank, layer) = table.layer(&module).unwrap_or_else(|| {
            panic!(
                "{shown}: module {} is in no layer of {DOC}",
                module.join("::")
            )
        });
        let text = fs::read_to_string(file).expect("readable");
        for (line, path) in references(&code(&text)) {
            let to = target(&module, &path, &modules, &exports);
            if to.is_empty() {
                continue;
            }
            let Some((their_rank, their_layer)) = table.layer(&to) else {
                panic!("{shown}:{line}: {} is in no layer of {DOC}", to.join("::"));
            };
            if their_rank > rank {
                found.push(Crossing {
                    file: shown.clone(),
                    line,
                    from: layer.to_owned(),
                    to: their_layer.to_owned(),
                    module: to.join("::"),
                    path: path.join("::"),
                });
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = table(root);
    let found = crossings(root, &table);
    let mut unlisted = Vec::new();
    let mut pairs = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for c in &found {
        let key = (c.file.clone(), c.module.clone());
        if !table.debts.contains(&key) {
            unlisted.push(format!(
                "{}:{}: {} -> {}: `{}` reaches up into `{}`",
                c.file, c.line, c.from, c.to, c.path, c.module
            ));
            pairs.insert(format!("{} -> {}", c.file, c.module));
        }
        seen.insert(key);
    }
    let gone: Vec<String> = table
        .debts
        .difference(&seen)
        .map(|(file, module)| format!("{file} -> {module}"))
        .collect();
    assert!(
        unlisted.is_empty(),
        "{} reference(s) reach a higher layer (see {DOC}):\n{}\n\nthe crossings, as {DOC} lists them:\n{}",
        unlisted.len(),
        unlisted.join("\n"),
        pairs.into_iter().collect::<Vec<_>>().join("\n")
    );
    assert!(
        gone.is_empty(),
        "these crossings listed in {DOC} no longer occur; remove them from the list:\n{}",
        gone.join("\n")
    );
}

#[test]
fn the_checker_reads_paths_as_the_compiler_does() {
    let refs = |s: &str| -> Vec<String> {
        references(&code(s))
            .into_iter()
            .map(|(_, p)| p.join("::"))
            .collect()
    };
    assert_eq!(
        refs("use crate::{a::B, c::{D, E as F}, g};"),
        ["crate::a::B", "crate::c::D", "crate::c::E", "crate::g"]
    );
    assert_eq!(
        refs("let x = crate::http::openapi::X;"),
        ["crate::http::openapi::X"]
    );
    assert_eq!(
        refs("// crate::http::X\n/* crate::y */ \"crate::z\""),
        Vec::<String>::new()
    );
    assert_eq!(
        refs("#[cfg(test)]\nmod tests { use crate::runtime::X; }\nuse crate::a;"),
        ["crate::a"]
    );
    assert_eq!(refs("use super::super::x::Y;"), ["super::super::x::Y"]);
    assert_eq!(refs("notcrate::x"), Vec::<String>::new());
    assert_eq!(
        refs("let q = b'\"'; let r = r#\"crate::no\"#; fn f<'a>(x: &'a str) { crate::yes::Y }"),
        ["crate::yes::Y"]
    );
    assert_eq!(
        refs("let brace = '{'; let c = '\\''; crate::a::B"),
        ["crate::a::B"]
    );
}
