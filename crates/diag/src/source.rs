//! The set of files diagnostics can point into.

use serde::Serialize;

/// Index of a file in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FileId(pub u32);

/// One file: its display name and, for text files, its contents.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Name as shown to the user (usually the path given on the command line).
    pub name: String,
    /// Text, if the file is text (DTB files have none).
    pub text: Option<String>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// 1-based line and column of a byte offset (column counted in characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let Some(text) = &self.text else {
            return (1, 1);
        };
        let offset = offset.min(text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(l) => l,
            Err(l) => l - 1,
        };
        let start = self.line_starts[line];
        let col = text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, col + 1)
    }
}

impl SourceFile {
    /// The byte offset where each line starts: 0, then one past every `\n`.
    pub(crate) fn line_starts(&self) -> &[usize] {
        &self.line_starts
    }
}

/// All files read during a run. Parsers add files here and refer to them by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a text file and returns its id.
    pub fn add_text(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        self.push(SourceFile {
            name: name.into(),
            text: Some(text),
            line_starts,
        })
    }

    /// Adds a binary file (no text) and returns its id.
    pub fn add_binary(&mut self, name: impl Into<String>) -> FileId {
        self.push(SourceFile {
            name: name.into(),
            text: None,
            line_starts: vec![0],
        })
    }

    fn push(&mut self, f: SourceFile) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(f);
        id
    }

    /// The file with this id.
    ///
    /// # Panics
    /// If the id did not come from this set.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The file with this id, if it exists.
    pub fn try_get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// The text of a span, if the span's file is text.
    pub fn snippet(&self, span: crate::Span) -> Option<&str> {
        self.try_get(span.file)?.text.as_deref()?.get(span.range())
    }

    /// All files.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }
}
