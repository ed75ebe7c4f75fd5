//! The Body's top-level elements: held back while small, so each carries only
//! the namespaces it uses; redeclaration bounded where they stream.

use super::*;

/// The bindings in scope at the Body, indexed for the top-level elements.
pub(super) struct Redeclaration {
    /// Non-default prefixes of `context`, to their index.
    pub(super) by_prefix: PrefixMap<Box<[u8]>, usize>,
    /// Index of the default namespace in `context`.
    pub(super) default: Option<usize>,
    /// Bytes of all of the context's declarations, as written out.
    pub(super) bytes: usize,
    /// Per context binding: the top-level element that last used it.
    pub(super) used_by: Vec<u64>,
    pub(super) used: Vec<usize>,
    /// Number of top-level elements so far (stamps `used_by`).
    pub(super) element: u64,
    /// Bytes of declarations added to the Body so far.
    pub(super) written: u64,
}

/// A top-level element of the Body whose start tag is not written yet.
pub(super) struct Held {
    /// Length of its name (the tag is `hold[..1 + name_len]`, then the rest).
    pub(super) name_len: usize,
    /// Prefixes the tag declares itself (sorted): not redeclared.
    pub(super) own: Vec<String>,
    /// An unprefixed element is inside: the default namespace is used.
    pub(super) uses_default: bool,
}

impl<'a, R: BufRead, W: Write> Scanner<'a, R, W> {
    /// A top-level element of the Body is encrypted apart from its ancestors, so
    /// it carries the namespaces in scope at the Body that it uses and does not
    /// declare. Which ones it uses is known at its end: it is held back until
    /// then, up to [`HOLD_BACK`] bytes; a larger one carries them all.
    pub(super) fn top_level(
        &mut self,
        tag: usize,
        name_end: usize,
        _close: usize,
        empty: bool,
    ) -> Result<(), Fault> {
        let name = as_str(&self.buf[tag + 1..name_end]);
        let (prefix, local) = split_qname(name);
        if local == "EncryptedData" && self.scopes.resolve(prefix) == Some(ns::XENC) {
            return Err(Box::new(EncryptError::AlreadyEncrypted));
        }
        self.saw_element = true;
        let own = self
            .scopes
            .marks
            .last()
            .map_or(&self.scopes.bindings[..], |&m| &self.scopes.bindings[m..]);
        let mut own: Vec<String> = own.iter().map(|b| b.prefix.clone()).collect();
        own.sort_unstable();
        // Everything before the tag goes out first; the tag starts the hold.
        let saved = self.pos;
        self.pos = tag;
        self.flush_run()?;
        self.pos = saved;
        self.hold.clear();
        self.held = Some(Held {
            name_len: name_end - tag - 1,
            own,
            uses_default: false,
        });
        self.redeclare.element += 1;
        self.release_pending = empty;
        Ok(())
    }

    /// The held top-level element ended: write it with the namespaces it uses.
    pub(super) fn release_held(&mut self) -> Result<(), Fault> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let r = &mut self.redeclare;
        r.used.clear();
        let stamp = r.element;
        let mark = |i: usize, r: &mut Redeclaration| {
            if r.used_by[i] != stamp {
                r.used_by[i] = stamp;
                r.used.push(i);
            }
        };
        if held.uses_default
            && let Some(i) = r.default
        {
            mark(i, r);
        }
        // Every `prefix:` in the element: names, and QNames in attribute values
        // and text (`xsi:type="p:T"`). Runs end at a colon, so each byte is
        // looked at at most twice.
        let bytes = &self.hold;
        let mut after_colon = 0;
        for colon in memchr::memchr_iter(b':', bytes) {
            let mut from = colon;
            while from > after_colon && is_reference_byte(bytes[from - 1]) {
                from -= 1;
            }
            if from < colon
                && let Some(&i) = r.by_prefix.get(&bytes[from..colon])
            {
                mark(i, r);
            }
            after_colon = colon + 1;
        }
        r.used.sort_unstable();
        self.write_held(&held, false)
    }

    /// The held element outgrew the hold: it carries every namespace in scope
    /// at the Body (its size pays for them), and the rest of it streams.
    pub(super) fn release_overflowing(&mut self) -> Result<(), Fault> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.write_held(&held, true)
    }

    pub(super) fn write_held(&mut self, held: &Held, all: bool) -> Result<(), Fault> {
        let mut declarations = String::new();
        let r = &self.redeclare;
        let mut add = |b: &Binding| {
            if held.own.binary_search(&b.prefix).is_err() {
                declarations.push_str(&declaration(b));
            }
        };
        if all {
            self.context.iter().for_each(&mut add);
        } else {
            r.used.iter().for_each(|&i| add(&self.context[i]));
        }
        // Half of the input so far, and a little: with base64 (4/3) the output
        // stays within twice the input, plus the security header.
        let written = self.redeclare.written + declarations.len() as u64;
        let input_so_far = self.position_of(self.pos);
        if written > REDECLARATION_ALLOWANCE + input_so_far / 2 {
            return Err(self.over(XmlLimit::NamespaceRedeclaration, written, self.pos));
        }
        self.redeclare.written = written;
        let split = 1 + held.name_len;
        let write = |out: &mut EncryptingWriter<W>, bytes: &[u8]| {
            out.write_all(bytes)
                .map_err(|e| Box::new(EncryptError::Write(e)))
        };
        write(self.out, &self.hold[..split])?;
        write(self.out, declarations.as_bytes())?;
        write(self.out, &self.hold[split..])?;
        self.hold.clear();
        if self.hold.capacity() > HOLD_BACK * 2 {
            self.hold = Vec::new();
        }
        Ok(())
    }
}
