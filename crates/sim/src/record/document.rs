//! Deterministic document content: a minimal, valid one-page PDF (or plain text) from lines of ASCII text.

/// Escape a line for a PDF literal string, replacing anything outside printable ASCII.
fn pdf_escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// A one-page A4 PDF 1.4 showing `lines` in Helvetica, with a correct cross-reference table so any reader
/// opens it. The same lines always give the same bytes (no dates or ids are added).
pub fn pdf(lines: &[String]) -> Vec<u8> {
    let mut stream = String::from("BT\n/F1 11 Tf\n14 TL\n50 790 Td\n");
    for line in lines {
        stream.push_str(&format!("({}) Tj T*\n", pdf_escape(line)));
    }
    stream.push_str("ET\n");

    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> \
         /Contents 5 0 R >>"
            .to_string(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        format!("<< /Length {} >>\nstream\n{}endstream", stream.len(), stream),
    ];

    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{}\nendobj\n", i + 1, body));
    }
    let xref_at = out.len();
    out.push_str(&format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1));
    for off in offsets {
        out.push_str(&format!("{off:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{}\n%%EOF\n",
        objects.len() + 1,
        xref_at
    ));
    out.into_bytes()
}

/// Plain-text content: the lines joined with newlines.
pub fn text(lines: &[String]) -> Vec<u8> {
    let mut s = lines.join("\n");
    s.push('\n');
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_xref_offsets_point_at_objects() {
        let bytes = pdf(&["Hello (world)".to_string(), "Line two".to_string()]);
        let text = String::from_utf8(bytes).expect("ascii");
        assert!(text.starts_with("%PDF-1.4\n"));
        assert!(text.ends_with("%%EOF\n"));
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[startxref..].starts_with("xref\n"));
        let entries: Vec<&str> = text[startxref..].lines().skip(3).take(5).collect();
        for (i, e) in entries.iter().enumerate() {
            let off: usize = e[..10].parse().expect("offset");
            assert!(text[off..].starts_with(&format!("{} 0 obj", i + 1)), "object {}", i + 1);
        }
        assert!(text.contains("(Hello \\(world\\)) Tj"));
        // The stream length is exact.
        let len_at = text.find("/Length ").expect("length") + 8;
        let len: usize = text[len_at..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("n");
        let start = text.find("stream\n").expect("stream") + 7;
        assert_eq!(&text[start + len..start + len + 9], "endstream");
    }
}
