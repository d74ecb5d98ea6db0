//! Token boundaries and character-level rules.
//!
//! The [`Lexer`] only finds where the next token ends, resuming where it stopped when the
//! token was still incomplete, so that bytes trickling in are each looked at a bounded
//! number of times. Parsing a complete token is left to quick-xml (see `parser`). The
//! functions below implement the restricted-XML rules (RFC 6120 §11.1) that quick-xml does
//! not enforce: no entities beyond the predefined five, character references to XML
//! characters only, no control characters.

use crate::error::{StreamError, StreamErrorCondition};

pub(crate) fn not_well_formed(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamErrorCondition::NotWellFormed, text)
}

pub(crate) fn restricted(text: &str) -> StreamError {
    StreamError::with_text(StreamErrorCondition::RestrictedXml, text)
}

pub(crate) fn policy(text: &str) -> StreamError {
    StreamError::with_text(StreamErrorCondition::PolicyViolation, text)
}

/// The longest reference (`&…;`) we wait for. Real ones are at most 10 bytes
/// (`&#x10FFFF;`); anything longer is refused instead of buffered.
const MAX_REF: usize = 32;

const CDATA_OPEN: &[u8] = b"<![CDATA[";

/// What a complete markup token is. Comments, DTDs and processing instructions other than
/// the XML declaration never get this far: they are refused as soon as they are recognized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Markup {
    /// `<name …>` or `<name …/>`.
    Start,
    /// `</name>`.
    End,
    /// `<![CDATA[…]]>`.
    CData,
    /// `<?xml …?>`.
    Decl,
}

/// Resumable search for the end of the markup token at the parse position.
///
/// The state is relative to the token start, so it survives the caller moving its buffer.
#[derive(Debug, Default)]
pub(crate) struct Lexer {
    /// Bytes of the token already examined without finding its end.
    scanned: usize,
    /// The quote character we are inside of in a start tag, or 0.
    quote: u8,
    /// Bytes examined in total, to test that trickled input is not rescanned.
    #[cfg(test)]
    pub examined: usize,
}

impl Lexer {
    /// Forgets a partially scanned token.
    pub fn reset(&mut self) {
        self.scanned = 0;
        self.quote = 0;
    }

    /// Finds the end of the markup token starting at `buf[pos]` (which is `<`). Returns
    /// `Ok(None)` when `buf` ends before the token does.
    pub fn markup(&mut self, buf: &[u8], pos: usize) -> Result<Option<(Markup, usize)>, StreamError> {
        let tok = &buf[pos..];
        debug_assert_eq!(tok.first(), Some(&b'<'));
        let found = match tok.get(1) {
            None => None,
            Some(b'/') => match tok.get(2) {
                Some(&b) if !is_name_start(b) => return Err(not_well_formed("malformed end tag")),
                _ => self.find_tag_end(tok, 2, false)?.map(|end| (Markup::End, end)),
            },
            Some(b'?') => self.decl(tok)?,
            Some(b'!') => self.bang(tok)?,
            Some(&b) if is_name_start(b) => self.find_tag_end(tok, 1, true)?.map(|end| (Markup::Start, end)),
            Some(_) => return Err(not_well_formed("malformed start tag")),
        };
        Ok(found.map(|(kind, len)| {
            self.reset();
            (kind, pos + len)
        }))
    }

    /// `<?`: the XML declaration is the only processing instruction allowed, and whether
    /// this is one shows within the first six bytes.
    fn decl(&mut self, tok: &[u8]) -> Result<Option<(Markup, usize)>, StreamError> {
        let target = &tok[2..tok.len().min(6)];
        if target.len() == 4 && target.starts_with(b"xml") && is_ws(target[3]) {
            return Ok(self.find_seq(tok, 6, b"?>")?.map(|end| (Markup::Decl, end)));
        }
        if target.len() < 4 && b"xml".starts_with(target) {
            return Ok(None);
        }
        Err(restricted("processing instructions are not allowed"))
    }

    /// `<!`: only CDATA sections; comments and DTD markup are refused on sight.
    fn bang(&mut self, tok: &[u8]) -> Result<Option<(Markup, usize)>, StreamError> {
        match tok.get(2) {
            None => Ok(None),
            Some(b'-') => Err(restricted("comments are not allowed")),
            Some(b'[') => {
                let n = tok.len().min(CDATA_OPEN.len());
                if tok[..n] != CDATA_OPEN[..n] {
                    return Err(not_well_formed("malformed markup"));
                }
                if n < CDATA_OPEN.len() {
                    return Ok(None);
                }
                Ok(self.find_seq(tok, CDATA_OPEN.len(), b"]]>")?.map(|end| (Markup::CData, end)))
            }
            // <!DOCTYPE, <!ENTITY, <!ELEMENT…
            Some(b) if b.is_ascii_uppercase() => Err(restricted("DTDs and entity declarations are not allowed")),
            Some(_) => Err(not_well_formed("malformed markup")),
        }
    }

    /// Finds the `>` closing a tag, skipping quoted attribute values when `quotes`.
    fn find_tag_end(&mut self, tok: &[u8], from: usize, quotes: bool) -> Result<Option<usize>, StreamError> {
        let start = from.max(self.scanned);
        let mut i = start;
        let found = loop {
            i += skip_plain(&tok[i..], &IN_TAG);
            let Some(&b) = tok.get(i) else { break None };
            match b {
                // Also forbidden inside attribute values; catching it here stops garbage early.
                b'<' => return Err(not_well_formed("'<' inside a tag")),
                b'>' if self.quote == 0 => break Some(i + 1),
                b'\'' | b'"' if quotes && self.quote == 0 => self.quote = b,
                b'\'' | b'"' if b == self.quote => self.quote = 0,
                b'>' | b'\'' | b'"' => {}
                _ => return Err(control_error()),
            }
            i += 1;
        };
        #[cfg(test)]
        {
            self.examined += i - start;
        }
        if found.is_none() {
            self.scanned = tok.len();
        }
        Ok(found)
    }

    /// Finds the end of `seq` (`?>`, `]]>`) at or after `from`.
    fn find_seq(&mut self, tok: &[u8], from: usize, seq: &[u8]) -> Result<Option<usize>, StreamError> {
        // Step back so that a terminator split across two feeds is found.
        let start = from.max(self.scanned.saturating_sub(seq.len() - 1));
        #[cfg(test)]
        {
            self.examined += tok.len().saturating_sub(start);
        }
        for i in start..tok.len() {
            check_control(tok[i])?;
            if tok[i..].starts_with(seq) {
                return Ok(Some(i + seq.len()));
            }
        }
        self.scanned = tok.len();
        Ok(None)
    }

    /// Scans character data from `buf[pos]` (not `<`), checking references and `]]>`.
    /// Returns the end of the part known to be complete: the next `<`, the end of `buf`, or
    /// the start of a reference or `]]` that `buf` cuts short. That end may be `pos`.
    pub fn text(&mut self, buf: &[u8], pos: usize) -> Result<usize, StreamError> {
        let mut i = pos;
        loop {
            i += skip_plain(&buf[i..], &IN_TEXT);
            let Some(&b) = buf.get(i) else { break };
            match b {
                b'<' => break,
                b'&' => match reference_len(&buf[i..])? {
                    Some(len) => i += len,
                    None => break,
                },
                b']' => {
                    let rest = &buf[i..];
                    if rest.starts_with(b"]]>") {
                        return Err(not_well_formed("']]>' is not allowed in text"));
                    }
                    if rest.len() < 3 && b"]]>".starts_with(rest) {
                        break;
                    }
                    i += 1;
                }
                _ => return Err(control_error()),
            }
        }
        #[cfg(test)]
        {
            self.examined += i - pos;
        }
        Ok(i)
    }
}

/// Bytes a scan must stop at: those listed and the C0 controls other than white space.
const fn stop_table(stops: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = !is_ws(b as u8);
        b += 1;
    }
    let mut i = 0;
    while i < stops.len() {
        table[stops[i] as usize] = true;
        i += 1;
    }
    table
}

static IN_TAG: [bool; 256] = stop_table(b"<>'\"");
static IN_TEXT: [bool; 256] = stop_table(b"<&]");

/// The number of leading bytes of `bytes` that are not stops: the tight loop of the scans.
fn skip_plain(bytes: &[u8], stops: &[bool; 256]) -> usize {
    bytes.iter().position(|&b| stops[b as usize]).unwrap_or(bytes.len())
}

/// The length of the reference at the start of `text` (which is `&`), checked; `None` when
/// `text` ends before it does.
fn reference_len(text: &[u8]) -> Result<Option<usize>, StreamError> {
    let window = &text[..text.len().min(MAX_REF)];
    if let Some(semi) = window.iter().position(|&b| b == b';') {
        resolve_ref(&text[1..semi])?;
        return Ok(Some(semi + 1));
    }
    let plausible = text[1..window.len()].iter().all(|&b| b == b'#' || is_name_char(b));
    if !plausible {
        return Err(not_well_formed("'&' must start a reference"));
    }
    if window.len() == MAX_REF {
        return Err(restricted("reference too long"));
    }
    Ok(None)
}

/// What a reference stands for.
enum Ref {
    Byte(u8),
    Char(char),
}

/// Resolves the name between `&` and `;`: one of the five predefined entities or a
/// character reference to a valid XML character. Never anything else: no DTD, no entities.
fn resolve_ref(name: &[u8]) -> Result<Ref, StreamError> {
    let digits = match name {
        b"lt" => return Ok(Ref::Byte(b'<')),
        b"gt" => return Ok(Ref::Byte(b'>')),
        b"amp" => return Ok(Ref::Byte(b'&')),
        b"quot" => return Ok(Ref::Byte(b'"')),
        b"apos" => return Ok(Ref::Byte(b'\'')),
        [b'#', b'x', hex @ ..] => (hex, 16),
        [b'#', dec @ ..] => (dec, 10),
        _ if is_ncname(name) => return Err(restricted("entity references are not allowed")),
        _ => return Err(not_well_formed("malformed reference")),
    };
    let (digits, radix) = digits;
    let bad = || not_well_formed("invalid character reference");
    if digits.is_empty() {
        return Err(bad());
    }
    let mut code: u32 = 0;
    for &d in digits {
        let v = (d as char).to_digit(radix).ok_or_else(bad)?;
        code = code.checked_mul(radix).and_then(|c| c.checked_add(v)).ok_or_else(bad)?;
    }
    match char::from_u32(code) {
        Some(c) if is_xml_char(c) => Ok(Ref::Char(c)),
        _ => Err(bad()),
    }
}

/// XML 1.0 `Char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Calls `emit` with the pieces of `raw` with its references replaced. `raw` is a whole
/// attribute value or text run, so an unterminated reference is an error.
fn unescape_with(raw: &[u8], mut emit: impl FnMut(&[u8])) -> Result<(), StreamError> {
    let mut rest = raw;
    while let Some(amp) = rest.iter().position(|&b| b == b'&') {
        emit(&rest[..amp]);
        let semi =
            rest[amp..].iter().position(|&b| b == b';').ok_or_else(|| not_well_formed("unterminated reference"))?;
        match resolve_ref(&rest[amp + 1..amp + semi])? {
            Ref::Byte(b) => emit(&[b]),
            Ref::Char(c) => emit(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
        rest = &rest[amp + semi + 1..];
    }
    emit(rest);
    Ok(())
}

/// Appends `raw` unescaped to `out`.
pub(crate) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
    unescape_with(raw, |piece| out.extend_from_slice(piece))
}

/// Checks the references in `raw` without building anything.
pub(crate) fn check_escaped(raw: &[u8]) -> Result<(), StreamError> {
    unescape_with(raw, |_| ())
}

/// `raw` (valid UTF-8) unescaped.
pub(crate) fn unescape_string(raw: &[u8]) -> Result<String, StreamError> {
    let mut out = Vec::with_capacity(raw.len());
    unescape(raw, &mut out)?;
    String::from_utf8(out).map_err(|_| not_well_formed("invalid UTF-8"))
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, StreamError> {
    std::str::from_utf8(bytes).map_err(|_| not_well_formed("invalid UTF-8"))
}

/// Checks that `bytes` is UTF-8 made of XML characters: no C0 control other than tab, LF
/// and CR, no U+FFFE or U+FFFF (UTF-8 already excludes surrogates). Runs over every
/// stanza, hence the branch-free control scan (it vectorizes) and the rare-byte shortcut.
pub(crate) fn check_chars(bytes: &[u8]) -> Result<&str, StreamError> {
    let text = utf8(bytes)?;
    if bytes.iter().fold(false, |bad, &b| bad | is_control(b)) {
        return Err(control_error());
    }
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF.
    if bytes.contains(&0xEF) && bytes.windows(3).any(|w| w[0] == 0xEF && w[1] == 0xBF && w[2] >= 0xBE) {
        return Err(not_well_formed("U+FFFE and U+FFFF are not allowed"));
    }
    Ok(text)
}

fn is_control(b: u8) -> bool {
    (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r')
}

fn check_control(b: u8) -> Result<(), StreamError> {
    if is_control(b) {
        return Err(control_error());
    }
    Ok(())
}

fn control_error() -> StreamError {
    not_well_formed("control characters are not allowed")
}

/// XML white space.
pub(crate) const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}
/// The number of white-space bytes at the start of `bytes`.
pub(crate) fn ws_len(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| !is_ws(b)).unwrap_or(bytes.len())
}

// Name characters. Non-ASCII bytes are accepted without checking the exact Unicode ranges
// of the XML `NameChar` production; UTF-8 validity is checked separately.
fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// A name without a colon (Namespaces in XML `NCName`).
pub(crate) fn is_ncname(name: &[u8]) -> bool {
    matches!(name.first(), Some(&b) if is_name_start(b)) && name.iter().all(|&b| is_name_char(b))
}

/// Splits a qualified name into prefix (empty if none) and local name.
pub(crate) fn split_qname(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let (prefix, local) = match name.iter().position(|&b| b == b':') {
        Some(colon) => {
            let prefix = &name[..colon];
            (is_ncname(prefix).then_some(prefix)?, &name[colon + 1..])
        }
        None => (&name[..0], name),
    };
    is_ncname(local).then_some((prefix, local))
}
