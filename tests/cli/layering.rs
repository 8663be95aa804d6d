//! The module layering, checked from the source text (no `cargo tree`):
//! every `crate::x` a file names must be in its own layer or below.
//!
//! ```text
//! cli                                                       roof
//! serve, intake, site
//! pipeline, demo                                            orchestrators
//! collect, store, aggregate, render, deliver, schedule      stages
//! config
//! model, period, calendar                                   bottom
//! ```
//!
//! Stages may use one another (render reads aggregate's rows, collect hands
//! store's quarantine rows); nothing may name a module above its own layer.

use std::path::{Path, PathBuf};

/// The layer of a top-level module of `src/`; higher is further up.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "model" | "period" | "calendar" | "retry" | "privacy" => 0,
        "config" => 1,
        "collect" | "store" | "aggregate" | "render" | "deliver" | "schedule" => 2,
        "pipeline" | "demo" => 3,
        "serve" | "intake" | "site" => 4,
        "cli" => 5,
        _ => return None,
    })
}

/// The top-level module a file of `src/` belongs to (`src/config/jobs.rs` →
/// `config`); `None` for the crate root (`lib.rs`, `main.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a source text names through `crate::`: `use
/// crate::x::…`, `crate::x::f()` in code, and each of `use crate::{x, y::z}`.
/// Comment lines are skipped (a doc link is not an import).
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let preceded_by_ident = rest[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[i + "crate::".len()..];
            if preceded_by_ident {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // Only the first segment of each item at depth 0 names a module.
                let mut depth = 0;
                let mut item_start = true;
                for (k, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_alphabetic() || c == '_') => {
                            out.push((n + 1, ident(&group[k..])));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.push((n + 1, ident(rest)));
            }
        }
    }
    out
}

fn ident(text: &str) -> String {
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every upward reference of one file, as `file:line: from → to`.
fn upward(file: &str, module: &str, text: &str) -> Vec<String> {
    let Some(own) = layer(module) else { return vec![format!("{file}: module “{module}” has no layer; add it to layering.rs")] };
    crate_refs(text)
        .into_iter()
        .filter(|(_, to)| to != module && layer(to).is_some_and(|l| l > own))
        .map(|(line, to)| format!("{file}:{line}: {module} (layer {own}) uses {to} (layer {})", layer(&to).unwrap_or_default()))
        .collect()
}

#[test]
fn no_module_imports_a_module_above_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut files = 0;
    for file in rust_files(&src) {
        let Some(module) = module_of(&src, &file) else { continue };
        let text = std::fs::read_to_string(&file).expect("read source");
        let name = file.strip_prefix(&src).unwrap_or(&file).display().to_string();
        violations.extend(upward(&name, &module, &text));
        files += 1;
    }
    assert!(files > 20, "only {files} source files found under {}", src.display());
    assert!(violations.is_empty(), "imports pointing up the layers:\n{}", violations.join("\n"));
}

#[test]
fn the_check_sees_every_form_of_an_upward_import() {
    let text = "//! See crate::pipeline for the caller.\n\
                use crate::model::Rating;\n\
                use crate::{period::Period, schedule::{Fire, Scheduler}};\n\
                fn f() { crate::collect::parse_timestamp(\"\"); }\n\
                pub use crate::serve;\n";
    let found = upward("config/x.rs", "config", text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("config/x.rs:3: config (layer 1) uses schedule"), "{found:?}");
    assert!(found[1].contains(":4: config (layer 1) uses collect"), "{found:?}");
    assert!(found[2].contains(":5: config (layer 1) uses serve"), "{found:?}");
    // Sideways between stages and down are allowed; the module itself too.
    assert!(
        upward("render/mod.rs", "render", "use crate::aggregate::Row;\nuse crate::config::Config;\nuse crate::render::x;\n").is_empty()
    );
    assert_eq!(upward("store/mod.rs", "store", "use crate::pipeline::run;\n").len(), 1);
}
