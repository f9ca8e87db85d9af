//! The direction of imports through the code (ARCHITECTURE.md, "Layers"): reads every
//! `crate::…` path in the source files of the lower layers and fails when one reaches a layer
//! it must not know. The codec is pure and imports nothing of the crate; the shared vocabulary
//! (`model`) knows only the codec; the store knows the vocabulary and the codec, never the
//! engine or the transport; the transport never knows the engine or the store; the password and
//! ACL files (`auth`) know nothing of the crate.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Each lower layer and the top-level modules of the crate it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("codec", &[]),
    ("model", &["codec"]),
    ("store", &["model", "codec"]),
    ("transport", &["codec", "config"]),
    ("auth", &[]),
];

/// Every `.rs` file under `dir`, or `dir` itself when it is a file.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level module named by each `crate::name` path in `source`, outside comments.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let standalone = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric());
            if standalone && !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b::{C, D}}` names several top-level modules at once.
        if let Some(group) = code.split("crate::{").nth(1) {
            found.extend(group_heads(group));
        }
    }
    found
}

/// The first path segment of each item of a `{…}` group, given the text after its `{`.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if depth == 0 && item_start => {
                if c.is_ascii_alphanumeric() || c == '_' {
                    current.push(c);
                } else if !current.is_empty() {
                    heads.push(std::mem::take(&mut current));
                    item_start = false;
                }
            }
            _ => {}
        }
    }
    if !current.is_empty() {
        heads.push(current);
    }
    heads
}

/// The path of a layer: `src/<layer>/` or `src/<layer>.rs`.
fn layer_path(root: &Path, layer: &str) -> PathBuf {
    let dir = root.join("src").join(layer);
    if dir.is_dir() {
        dir
    } else {
        root.join("src").join(format!("{layer}.rs"))
    }
}

#[test]
fn lower_layers_import_only_what_is_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    for (layer, allowed) in ALLOWED {
        let files = rust_files(&layer_path(root, layer));
        assert!(!files.is_empty(), "no source files for the layer {layer}");
        for file in files {
            let source = fs::read_to_string(&file).expect("a readable source file");
            for import in crate_imports(&source) {
                if import != *layer && !allowed.contains(&import.as_str()) {
                    let file = file.strip_prefix(root).unwrap_or(&file).display();
                    violations.push(format!("{file}: {layer} imports crate::{import}"));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the direction of the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_finds_paths_groups_and_ignores_comments() {
    let source = "use crate::codec::Packet;\nuse crate::{model::{Message, Delivery}, store};\n\
                  // crate::broker in a comment\nlet x = crate::config::Config::default();\n\
                  let y = notcrate::broker::X;";
    let found: Vec<String> = crate_imports(source).into_iter().collect();
    assert_eq!(found, ["codec", "config", "model", "store"]);
}
