//! A problem found in a mapping or conformance file, printed as `file:line:col: key.path: message`.

use super::yaml::Pos;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub pos: Pos,
    /// Dotted key path inside the file (`template.name[0].family`), empty at the top.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "(top)" } else { &self.path };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.pos.line, self.pos.col, path, self.message
        )
    }
}

/// Collects problems while a file is compiled, so that all are reported at once.
#[derive(Debug, Default)]
pub struct Problems {
    pub list: Vec<Problem>,
}

impl Problems {
    pub fn add(&mut self, file: &str, pos: Pos, path: &str, message: impl Into<String>) {
        self.list.push(Problem {
            file: file.to_string(),
            pos,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Joins a key path and a child key.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a key path and a list index.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
