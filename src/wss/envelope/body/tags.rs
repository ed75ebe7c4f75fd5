//! Start tags inside the Body: attributes, namespace declarations, prefixes,
//! expanded-name uniqueness, depth and element limits.

use super::*;

impl<'a, R: BufRead, W: Write> Scanner<'a, R, W> {
    pub(super) fn start_tag(&mut self) -> Result<Step, Fault> {
        let tag = self.pos;
        let limit = self.checked;
        if !self.name_ends.is_empty()
            && let Some(seen) = self
                .tags
                .find(&self.buf[tag..limit], self.scopes.generation)
            && let Some(step) = self.seen_tag(tag, seen)?
        {
            return Ok(step);
        }
        let buf = &self.buf;
        let Some(name) = find_name_end(buf, tag + 1, limit) else {
            self.check_name_length(limit - tag - 1, tag)?;
            return Ok(Step::More);
        };
        let name_end = name.end;
        self.check_name_length(name_end - tag - 1, tag)?;
        if !name.is_qname(&buf[tag + 1..name_end]) {
            return Err(self.malformed_at(
                tag,
                format!(
                    "invalid element name {:?}",
                    String::from_utf8_lossy(&buf[tag + 1..name_end])
                ),
            ));
        }
        // Attributes, up to `>` or `/>`.
        self.attributes.clear();
        let mut i = name_end;
        let (close, empty, end) = loop {
            let space_from = i;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            match buf[i] {
                b'>' => break (i, false, i + 1),
                b'/' => {
                    if i + 1 >= limit {
                        return Ok(Step::More);
                    }
                    if buf[i + 1] != b'>' {
                        return Err(self.malformed_at(i, "expected '>' after '/' in a tag"));
                    }
                    break (i, true, i + 2);
                }
                _ if i == space_from => {
                    return Err(self.malformed_at(i, "attributes must be separated by whitespace"));
                }
                _ => {}
            }
            let name_from = i;
            if self.attributes.len() == self.start.limits.max_attributes_per_element {
                return Err(self.over(
                    XmlLimit::MaxAttributesPerElement,
                    self.attributes.len() as u64,
                    tag,
                ));
            }
            let Some(attribute) = find_name_end(buf, i, limit) else {
                self.check_name_length(limit - name_from, name_from)?;
                return Ok(Step::More);
            };
            let name_to = attribute.end;
            self.check_name_length(name_to - name_from, name_from)?;
            i = name_to;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            if !attribute.is_qname(&buf[name_from..name_to]) {
                return Err(self.malformed_at(
                    name_from,
                    format!(
                        "invalid attribute name {:?}",
                        String::from_utf8_lossy(&buf[name_from..name_to])
                    ),
                ));
            }
            if buf[i] != b'=' {
                return Err(self.malformed_at(i, "bad attribute: expected '=' after its name"));
            }
            i += 1;
            while i < limit && is_space(buf[i]) {
                i += 1;
            }
            if i >= limit {
                return Ok(Step::More);
            }
            let quote = buf[i];
            if quote != b'"' && quote != b'\'' {
                return Err(self.malformed_at(i, "bad attribute: value not quoted"));
            }
            let Some(length) = memchr(quote, &buf[i + 1..limit]) else {
                if (limit - i - 1) as u64 > self.max_text() {
                    return Err(self.over(XmlLimit::MaxTextLength, self.max_text(), i));
                }
                return Ok(Step::More);
            };
            let (value_from, value_to) = (i + 1, i + 1 + length);
            self.check_attribute_value(value_from..value_to)?;
            self.attributes.push(Attribute {
                name: name_from..name_to,
                colon: attribute.colon,
                value: value_from..value_to,
            });
            i = value_to + 1;
        };
        let nested = !self.name_ends.is_empty();
        let declared = self.element(tag, name, close, empty)?;
        if nested && !declared {
            // Checked once in this namespace context: the same bytes pass again.
            // With one attribute, only the bytes up to its value are kept: records
            // repeat the tag with another value (`<item no="17">`).
            let (len, value_follows) = match &self.attributes[..] {
                [only] => (only.value.start - tag, true),
                _ => (end - tag, false),
            };
            let seen = SeenTag {
                len,
                name_len: name_end - tag - 1,
                empty,
                value_follows,
            };
            self.tags
                .insert(&self.buf[tag..tag + len], seen, self.scopes.generation);
        }
        Ok(Step::Next(end))
    }

    /// A remembered start tag at `tag`: `None` if what follows the remembered
    /// bytes is not the one attribute value and the tag's end (the full path
    /// then reads the tag).
    pub(super) fn seen_tag(&mut self, tag: usize, seen: SeenTag) -> Result<Option<Step>, Fault> {
        let (end, empty) = if seen.value_follows {
            let value_from = tag + seen.len;
            let quote = self.buf[value_from - 1];
            let Some(length) = memchr(quote, &self.buf[value_from..self.checked]) else {
                return Ok(None);
            };
            let value_to = value_from + length;
            if self.check_attribute_value(value_from..value_to).is_err() {
                return Ok(None);
            }
            let mut i = value_to + 1;
            while i < self.checked && is_space(self.buf[i]) {
                i += 1;
            }
            match &self.buf[i..self.checked] {
                [b'>', ..] => (i + 1, false),
                [b'/', b'>', ..] => (i + 2, true),
                _ => return Ok(None),
            }
        } else {
            (tag + seen.len, seen.empty)
        };
        self.check_depth()?;
        self.count_element(tag)?;
        self.scopes.push_empty();
        self.close_start_tag(tag + 1..tag + 1 + seen.name_len, empty);
        Ok(Some(Step::Next(end)))
    }

    /// An attribute value: no `<`, and only well-formed references.
    pub(super) fn check_attribute_value(&self, value: Range<usize>) -> Result<(), Fault> {
        let value_from = value.start;
        let value = &self.buf[value];
        if value.len() as u64 > self.max_text() {
            return Err(self.over(XmlLimit::MaxTextLength, self.max_text(), value_from));
        }
        if value.contains(&b'<') {
            return Err(self.malformed_at(value_from, "'<' in an attribute value"));
        }
        check_references(value, self.start.limits.max_name_length).map_err(|(at, e)| match e {
            ReferenceError::TooLong => self.over(
                XmlLimit::MaxNameLength,
                self.start.limits.max_name_length as u64,
                value_from + at,
            ),
            ReferenceError::Invalid(reason) => self.malformed_at(value_from + at, reason),
        })
    }

    pub(super) fn count_element(&mut self, tag: usize) -> Result<(), Fault> {
        self.elements += 1;
        match self.start.limits.max_elements {
            Some(max) if self.elements > max => Err(self.over(XmlLimit::MaxElements, max, tag)),
            _ => Ok(()),
        }
    }

    pub(super) fn check_depth(&self) -> Result<(), Fault> {
        let depth = self.start.depth + self.name_ends.len() + 1;
        if depth > self.start.limits.max_depth {
            return Err(Box::new(EncryptError::TooDeep {
                limit: self.start.limits.max_depth,
            }));
        }
        Ok(())
    }

    /// The start tag's scope is pushed: track the element it opens.
    pub(super) fn close_start_tag(&mut self, name: Range<usize>, empty: bool) {
        if let Some(held) = &mut self.held
            && !held.uses_default
            && find(b':', &self.buf[name.clone()]).is_none()
        {
            held.uses_default = true;
        }
        if empty {
            self.scopes.pop();
        } else {
            self.names.extend_from_slice(&self.buf[name]);
            self.name_ends.push(self.names.len());
        }
    }

    /// A complete start tag at `tag`: check attributes and namespaces, track
    /// the element, and rewrite it if it is a top-level element of the Body.
    /// Returns whether the tag declares namespaces.
    pub(super) fn element(
        &mut self,
        tag: usize,
        name: Name,
        close: usize,
        empty: bool,
    ) -> Result<bool, Fault> {
        self.check_depth()?;
        self.count_element(tag)?;
        let declared = if self.attributes.is_empty() {
            Vec::new()
        } else {
            self.attribute_bindings(tag)?
        };
        let declares = !declared.is_empty();
        if declares {
            self.scopes.push(declared);
            let max = self.start.limits.max_namespace_declarations;
            if self.scopes.declarations() > max {
                self.scopes.pop();
                return Err(self.over(XmlLimit::MaxNamespaceDeclarations, max as u64, tag));
            }
        } else {
            self.scopes.push_empty();
        }
        let checked = self.check_prefixes(tag, name).and_then(|()| {
            if self.name_ends.is_empty() {
                self.top_level(tag, name.end, close, empty)
            } else {
                Ok(())
            }
        });
        if let Err(e) = checked {
            self.scopes.pop();
            return Err(e);
        }
        self.close_start_tag(tag + 1..name.end, empty);
        Ok(declares)
    }

    /// Refuse duplicate attributes; the namespaces the attributes declare.
    pub(super) fn attribute_bindings(&self, tag: usize) -> Result<Vec<Binding>, Fault> {
        let buf = &self.buf;
        let attribute_name = |a: &Attribute| &buf[a.name.clone()];
        let count = self.attributes.len();
        let duplicate = if count <= 16 {
            (1..count).any(|j| {
                (0..j).any(|k| {
                    same(
                        attribute_name(&self.attributes[j]),
                        attribute_name(&self.attributes[k]),
                    )
                })
            })
        } else {
            let mut sorted: Vec<&[u8]> = self.attributes.iter().map(attribute_name).collect();
            sorted.sort_unstable();
            sorted.windows(2).any(|w| w[0] == w[1])
        };
        if duplicate {
            return Err(self.malformed_at(tag, "bad attribute: duplicate attribute name"));
        }
        let mut declared = Vec::new();
        for a in &self.attributes {
            let key = attribute_name(a);
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                let raw = as_str(&buf[a.value.clone()]);
                let binding = namespace_binding(as_str(key), raw, normalize_attribute(raw))
                    .map_err(|reason| self.malformed_at(a.name.start, reason))?;
                declared.push(binding);
            }
        }
        Ok(declared)
    }

    /// Every prefix the element and its attributes use must be declared; no
    /// element has the prefix `xmlns`; no two attributes have the same
    /// expanded name (Namespaces in XML §6.3).
    pub(super) fn check_prefixes(&mut self, tag: usize, name: Name) -> Result<(), Fault> {
        if let Some(colon) = name.colon {
            if matches!(&self.buf[tag + 1..colon], b"xmlns" | b"xml") {
                return Err(self.malformed_at(tag, "an element name with a reserved prefix"));
            }
            self.check_prefix(tag, tag + 1..colon)?;
        }
        let mut qualified = 0;
        for k in 0..self.attributes.len() {
            let a = &self.attributes[k];
            if let Some(colon) = a.colon {
                let prefix = a.name.start..colon;
                if &self.buf[prefix.clone()] != b"xmlns" {
                    qualified += 1;
                }
                self.check_prefix(tag, prefix)?;
            }
        }
        if qualified >= 2 {
            self.check_expanded_names(tag)?;
        }
        Ok(())
    }

    /// `p:a` and `q:a` with `p` and `q` bound to one namespace are one name twice.
    pub(super) fn check_expanded_names(&self, tag: usize) -> Result<(), Fault> {
        let mut expanded: Vec<(&str, &[u8])> = Vec::new();
        for a in &self.attributes {
            let Some(colon) = a.colon else { continue };
            let prefix = as_str(&self.buf[a.name.start..colon]);
            if prefix == "xmlns" {
                continue;
            }
            let uri = self.scopes.resolve(prefix).unwrap_or_default();
            expanded.push((uri, &self.buf[colon + 1..a.name.end]));
        }
        if has_duplicate(&mut expanded) {
            return Err(self.malformed_at(
                tag,
                "bad attribute: two attributes with the same namespace and local name",
            ));
        }
        Ok(())
    }

    #[inline]
    pub(super) fn check_prefix(&mut self, tag: usize, prefix: Range<usize>) -> Result<(), Fault> {
        let prefix = &self.buf[prefix];
        if self.known_prefix(prefix) || prefix == b"xmlns" {
            return Ok(());
        }
        let text = as_str(prefix);
        if self.scopes.resolve(text).is_none() {
            return Err(self.malformed_at(tag, format!("prefix {text} is not declared")));
        }
        if self.known_generation != self.scopes.generation {
            self.known_generation = self.scopes.generation;
            self.known.clear();
        }
        // A handful: with thousands of distinct prefixes a longer list would
        // cost more to search than the lookup it saves.
        if self.known.len() == KNOWN_PREFIXES {
            self.known.pop();
        }
        self.known.insert(0, prefix.to_vec());
        Ok(())
    }
}
