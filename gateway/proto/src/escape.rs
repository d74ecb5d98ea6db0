//! XML escaping for text and attribute values.

/// Appends `s` to `out`, escaping it for use as character data.
pub fn text(out: &mut Vec<u8>, s: &str) {
    escape(out, s, false)
}

/// Appends `s` to `out`, escaping it for use inside a quoted attribute value
/// (either quote character).
pub fn attr(out: &mut Vec<u8>, s: &str) {
    escape(out, s, true)
}

/// Appends ` name='value'`, escaping the value.
pub fn attribute(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    attr(out, value);
    out.push(b'\'');
}

/// Appends ` xmlns:prefix='uri'`, or ` xmlns='uri'` for an empty prefix.
pub fn namespace_declaration(out: &mut Vec<u8>, prefix: &str, uri: &str) {
    out.extend_from_slice(b" xmlns");
    if !prefix.is_empty() {
        out.push(b':');
        out.extend_from_slice(prefix.as_bytes());
    }
    out.extend_from_slice(b"='");
    attr(out, uri);
    out.push(b'\'');
}

fn escape(out: &mut Vec<u8>, s: &str, in_attr: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'"' if in_attr => b"&quot;",
            b'\'' if in_attr => b"&apos;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        let mut out = Vec::new();
        super::attr(&mut out, r#"a<b>&"c'"#);
        assert_eq!(out, b"a&lt;b&gt;&amp;&quot;c&apos;");
        let mut out = Vec::new();
        super::text(&mut out, r#"x "y" & z"#);
        assert_eq!(out, br#"x "y" &amp; z"#);
    }
}
