//! Checks of the code's shape that a reviewer would otherwise do by eye: the module graph
//! of each crate has no cycles, and no function outside tests reaches 100 lines.
//!
//! The sources are read as text with a small scanner (comments and literals blanked, test
//! modules skipped), so the checks need no parser crate. A module is a file; an edge runs
//! from a file to every file whose items it names through `crate::` or `super::` paths
//! (`use` lines, grouped imports and paths written inline alike). A `mod x;` declaration
//! is not an edge: a parent declaring its children is not a dependency on them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Functions must stay under this many lines, counted from `fn` to the closing brace.
const MAX_FN_LINES: usize = 100;

/// The crates checked: their `src` directories, relative to this package.
const CRATES: [&str; 2] = ["src", "actors/src"];

/// Source text with comments, string and char literals replaced by spaces (line breaks
/// kept, so line numbers still hold).
fn blank(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let keep_lines = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep_lines(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            for &ch in &chars[i..j.min(chars.len())] {
                out.push(keep_lines(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(keep_lines(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && is_char_literal(&chars, i) {
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 1;
            }
            j += 1;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            for _ in i..=j.min(chars.len() - 1) {
                out.push(' ');
            }
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `'x'` or `'\n'`, not a lifetime `'a`.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    matches!(
        (chars.get(i + 1), chars.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// The code with every `#[cfg(test)]` item (module or function) cut out.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its closing brace, or at a `;` before any brace.
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, ch) in item.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        // Keep the line count.
        out.extend(item[..end].chars().filter(|c| *c == '\n'));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "main.rs")
            {
                // `main.rs` is a crate of its own (the binary), reaching this one by name.
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The module path of a file: `src/ws/rider.rs` → `ws::rider`, `mod.rs` and `lib.rs` name
/// their directory (the crate root is the empty path).
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(root)
        .expect("under root")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// Paths written after `crate::` or `super::`, or starting with a child module's name
/// (grouped imports expanded), as segment lists resolved from the crate root, each with
/// the shortest module prefix it may name (a relative path must name a child, not the
/// module itself or the crate root). `module` is the file's own module path.
fn referenced_paths(code: &str, module: &str) -> Vec<(Vec<String>, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = |word: &str| {
            chars[i..].iter().take(word.len()).copied().eq(word.chars()) && !ident_before(&chars, i)
        };
        let base: Option<(Vec<String>, usize)> = if starts("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if starts("super::") {
            // `super` of `a/x.rs` (module a::x) and of `a/mod.rs` (module a) alike is the
            // module path with its last segment dropped.
            let mut own = own_path(module);
            let mut skip = 0;
            let mut j = i;
            while chars[j..].iter().take(7).copied().eq("super::".chars()) {
                own.pop();
                skip += 7;
                j += 7;
            }
            Some((own, skip))
        } else {
            None
        };
        match base {
            Some((prefix, skip)) => {
                let (found, used) = parse_tree(&chars[i + skip..], prefix);
                paths.extend(found.into_iter().map(|p| (p, 0)));
                i += skip + used.max(1);
            }
            None if starts("self::") => i += "self::".len(),
            None if relative_start(&chars, i) => {
                // `child::Item` (or `use child::...`) in a module with child modules: kept
                // only if it names one of them (see `module_graph`).
                let own = own_path(module);
                let (found, used) = parse_tree(&chars[i..], own.clone());
                let min = own.len() + 1;
                paths.extend(found.into_iter().map(|p| (p, min)));
                i += used.max(1);
            }
            None => i += 1,
        }
    }
    paths
}

fn own_path(module: &str) -> Vec<String> {
    module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An identifier starting here (not in the middle of a path) is followed by `::`.
fn relative_start(chars: &[char], i: usize) -> bool {
    if ident_before(chars, i) || (i >= 1 && chars[i - 1] == ':') || !chars[i].is_alphabetic() {
        return false;
    }
    let mut j = i;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    chars[j..].iter().take(2).copied().eq("::".chars())
}

/// Reads `a::b::{c, d::e}` at the start of `chars` into full paths under `prefix`; returns
/// them and how many characters were read.
fn parse_tree(chars: &[char], prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut i = 0;
    let mut path = prefix;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            let mut out = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return (out, i + 1);
                }
                let (inner, used) = parse_tree(&chars[i..], path.clone());
                out.extend(inner);
                i += used.max(1);
            }
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if start == i {
            return (vec![path], i);
        }
        path.push(chars[start..i].iter().collect());
        if chars[i..].iter().take(2).copied().eq("::".chars()) {
            i += 2;
        } else {
            return (vec![path], i);
        }
    }
}

/// File modules of one crate and the edges between them.
fn module_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(root);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(root, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(root, file);
        let text = std::fs::read_to_string(file).expect("read source");
        let code = without_tests(&blank(&text));
        let mut edges = BTreeSet::new();
        for (path, min) in referenced_paths(&code, &module) {
            // The longest prefix that is a file module is the module named.
            let target = (min..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|p| modules.contains(p));
            if let Some(target) = target.filter(|t| *t != module) {
                edges.insert(target);
            }
        }
        graph.insert(module, edges);
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// `(lines, name, line)` of every function outside tests.
fn functions(code: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let name = fn_name(lines[i]);
        let Some(name) = name else {
            i += 1;
            continue;
        };
        let mut depth = 0i64;
        let mut opened = false;
        let mut j = i;
        'scan: while j < lines.len() {
            for ch in lines[j].chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            break 'scan;
                        }
                    }
                    ';' if !opened => break 'scan,
                    _ => {}
                }
            }
            j += 1;
        }
        if opened {
            found.push((j - i + 1, name, i + 1));
            // Nested functions are counted within their parent only.
            i = j + 1;
        } else {
            i += 1;
        }
    }
    found
}

/// The name of a function declared on this line, if one is.
fn fn_name(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let allowed = |w: &str| {
        w.starts_with("pub")
            || matches!(w, "async" | "const" | "unsafe" | "extern" | "default")
            || w.starts_with("#[")
    };
    if !words[..at].iter().all(|w| allowed(w)) {
        return None;
    }
    let name: String = words
        .get(at + 1)?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn crate_root(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

#[test]
fn module_graphs_have_no_cycles() {
    for dir in CRATES {
        let graph = module_graph(&crate_root(dir));
        assert!(graph.len() > 10, "{dir}: too few modules found: {graph:?}");
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        assert!(edges > 10, "{dir}: too few edges found: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{dir}: module cycle {}", cycle.join(" → "));
        }
    }
}

#[test]
fn no_function_reaches_the_limit() {
    let mut long = Vec::new();
    let mut counted = 0;
    for dir in CRATES {
        let root = crate_root(dir);
        for file in sources(&root) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (lines, name, line) in functions(&without_tests(&blank(&text))) {
                counted += 1;
                if lines >= MAX_FN_LINES {
                    long.push(format!("{}:{line} {name} ({lines} lines)", file.display()));
                }
            }
        }
    }
    assert!(counted > 300, "too few functions found: {counted}");
    assert!(
        long.is_empty(),
        "functions of {MAX_FN_LINES} lines or more: {long:#?}"
    );
}

// The checks' own tools, on inputs whose answer is known.

#[test]
fn the_scanner_blanks_comments_and_literals() {
    let code = blank("let a = \"crate::x\"; // crate::y\nlet b = r#\"{\"#; /* { */ let c = '{';");
    assert!(!code.contains("crate::"), "{code}");
    assert!(!code.contains('{'), "{code}");
    assert_eq!(code.lines().count(), 2);
    assert!(blank("fn f<'a>(x: &'a str) {}").contains("'a str"));
}

#[test]
fn grouped_imports_and_super_paths_resolve() {
    let code = "use crate::{a::b, c::{d, e::F}};\nfn f() { super::g::h(); }";
    let paths = referenced_paths(code, "x::y");
    let joined: Vec<String> = paths.iter().map(|(p, _)| p.join("::")).collect();
    for want in ["a::b", "c::d", "c::e::F", "x::g::h"] {
        assert!(joined.contains(&want.to_owned()), "{want} in {joined:?}");
    }
}

#[test]
fn a_cycle_is_found_and_a_tree_is_not() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a".into(), ["b".into()].into());
    graph.insert("b".into(), ["c".into()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.insert("c".into(), ["a".into()].into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn test_items_are_skipped_and_functions_measured() {
    let code =
        "fn a() {\n    1\n}\n#[cfg(test)]\nmod tests {\n    fn long() {\n    }\n}\nfn b();\n";
    let found = functions(&without_tests(code));
    assert_eq!(found, vec![(3, "a".to_owned(), 1)]);
}
