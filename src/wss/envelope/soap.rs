//! What the rewriter knows of SOAP: the Envelope's children, header blocks, the
//! ultimate receiver's Security header, and where encryption begins and ends.

use super::*;

impl<R: io::BufRead, W: Write> Rewriter<'_, R, W> {
    pub(super) fn envelope_namespace(&self) -> &'static str {
        self.version.map(SoapVersion::namespace).unwrap_or_default()
    }

    /// How to write an element in the envelope namespace at the current scope:
    /// `Some(prefix)` or `Some("")` for the default namespace.
    pub(super) fn envelope_prefix_in_scope(&self) -> Option<String> {
        let env = self.version?.namespace();
        if let Some(p) = self.scopes.prefix_for(env) {
            return Some(p.to_string());
        }
        self.scopes.default_is(env).then(String::new)
    }

    /// A decoy Envelope or Body inside the Header (of either SOAP version) would
    /// travel in plaintext beside the encrypted real one: a receiver that takes
    /// the first Body it finds would read it.
    pub(super) fn refuse_soap_structure_in_header(&self, name: &str) -> Result<(), EncryptError> {
        let (uri, local) = self.resolve_element(name)?;
        if SoapVersion::from_namespace(&uri).is_some()
            && matches!(local.as_str(), "Body" | "Envelope")
        {
            return Err(self.malformed(format!("a SOAP {local} inside the Header")));
        }
        Ok(())
    }

    pub(super) fn envelope_child(
        &mut self,
        raw: &str,
        name: &str,
        empty: bool,
        env_scope_prefix: (Option<String>, Option<String>),
    ) -> Result<(), EncryptError> {
        let (uri, local) = self.resolve_element(name)?;
        let is_env = uri == self.envelope_namespace();
        match (is_env, local.as_str()) {
            (true, "Header") => {
                if self.header_seen || self.body != BodyState::NotYet {
                    return Err(self.malformed("Header must come once, before the Body"));
                }
                self.header_seen = true;
                if empty {
                    // `<soap:Header/>`: open it, add the Security header, close it.
                    self.write_tag(raw, false)?;
                    let named = self.named_envelope_prefix();
                    self.write_new_security(named)?;
                    self.write(b"</")?;
                    self.write(name.as_bytes())?;
                    self.write(b">")
                } else {
                    self.in_header = true;
                    self.write_tag(raw, false)
                }
            }
            (true, "Body") => {
                if self.body != BodyState::NotYet {
                    return Err(EncryptError::TwoBodies {
                        position: self.position(),
                    });
                }
                if !self.security_written {
                    let (element_prefix, named_prefix) = env_scope_prefix;
                    let prefix = element_prefix.unwrap_or_default();
                    let tag = if prefix.is_empty() {
                        "Header".to_string()
                    } else {
                        format!("{prefix}:Header")
                    };
                    self.write(format!("<{tag}>").as_bytes())?;
                    self.write_new_security(named_prefix)?;
                    self.write(format!("</{tag}>").as_bytes())?;
                }
                if empty {
                    return Err(EncryptError::EmptyBody);
                }
                self.write_tag(raw, false)?;
                self.begin_encryption()
            }
            _ => {
                if self.body == BodyState::NotYet {
                    return Err(self.malformed(format!(
                        "element {name} before the Body: only a Header may come first"
                    )));
                }
                if self.body == BodyState::Done && self.version == Some(SoapVersion::Soap12) {
                    return Err(self.malformed("SOAP 1.2 allows no element after the Body"));
                }
                if is_env && local == "Envelope" {
                    return Err(self.malformed("an Envelope inside the Envelope"));
                }
                self.write_tag(raw, empty)
            }
        }
    }

    pub(super) fn header_block(
        &mut self,
        e: &BytesStart<'_>,
        raw: &str,
        name: &str,
        empty: bool,
    ) -> Result<(), EncryptError> {
        let (uri, local) = self.resolve_element(name)?;
        if uri != ns::WSSE || local != "Security" || !self.for_ultimate(e)? {
            return self.write_tag(raw, empty);
        }
        // WSS 1.0 §6.1: one Security header per role; a second one for the
        // ultimate receiver leaves receivers to guess which one counts.
        if self.security_written {
            return Err(self.malformed("a second wsse:Security header for the ultimate receiver"));
        }
        self.write_tag(raw, false)?;
        self.mark_security_offset();
        let elements = std::mem::take(&mut self.security_elements);
        self.write(elements.as_bytes())?;
        self.security_written = true;
        self.reused_security = true;
        if empty {
            self.write(b"</")?;
            self.write(name.as_bytes())?;
            self.write(b">")?;
        }
        Ok(())
    }

    /// Whether a header block targets the ultimate receiver (no actor/role, or the
    /// SOAP 1.2 ultimateReceiver role).
    pub(super) fn for_ultimate(&self, e: &BytesStart<'_>) -> Result<bool, EncryptError> {
        let env = self.envelope_namespace();
        let role_name = match self.version {
            Some(SoapVersion::Soap12) => "role",
            _ => "actor",
        };
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| self.malformed(format!("bad attribute: {err}")))?;
            let (prefix, local) = split_qname(attr.key.0);
            if prefix.is_empty() || local != role_name || self.scopes.resolve(prefix) != Some(env) {
                continue;
            }
            let value = attr.value.trim();
            return Ok(value.is_empty() || value == ns::SOAP12_ULTIMATE_RECEIVER);
        }
        Ok(true)
    }

    /// A non-default prefix bound to the envelope namespace in the current scope.
    pub(super) fn named_envelope_prefix(&self) -> Option<String> {
        let env = self.version?.namespace();
        self.scopes.prefix_for(env).map(str::to_string)
    }

    /// Write a new Security header. `named_prefix` is a prefix bound to the envelope
    /// namespace where the header is inserted (for `mustUnderstand`), if any.
    pub(super) fn write_new_security(
        &mut self,
        named_prefix: Option<String>,
    ) -> Result<(), EncryptError> {
        let mut tag = format!(r#"<wsse:Security xmlns:wsse="{}""#, ns::WSSE);
        if self.options.must_understand {
            let env = self.envelope_namespace();
            let version = self.version.unwrap_or(SoapVersion::Soap11);
            let prefix = match named_prefix {
                Some(p) if p != "wsse" => p,
                _ => {
                    let p = match version {
                        SoapVersion::Soap11 => "soapenv",
                        SoapVersion::Soap12 => "env",
                    };
                    tag.push_str(&format!(r#" xmlns:{p}="{env}""#));
                    p.to_string()
                }
            };
            tag.push_str(&format!(
                r#" {prefix}:mustUnderstand="{}""#,
                version.must_understand_true()
            ));
        }
        tag.push('>');
        let elements = std::mem::take(&mut self.security_elements);
        self.write(tag.as_bytes())?;
        self.mark_security_offset();
        self.write(elements.as_bytes())?;
        self.write(b"</wsse:Security>")?;
        self.security_written = true;
        Ok(())
    }

    /// Remember where the security elements start in the output (the header
    /// comes before the Body, so the output is still plain here).
    fn mark_security_offset(&mut self) {
        if let Sink::Plain(out) = &self.sink {
            self.security_offset = out.count;
        }
    }

    /// Whether `e` is the header element to encrypt as a whole (its
    /// unqualified `Id` names it), and none is being encrypted already.
    pub(super) fn is_element_to_encrypt(&self, e: &BytesStart<'_>) -> bool {
        let Some(wanted) = self.element_id else {
            return false;
        };
        self.element_depth.is_none()
            && matches!(self.sink, Sink::Plain(_))
            && e.attributes()
                .with_checks(false)
                .flatten()
                .any(|a| a.key.0 == "Id" && &*a.value == wanted)
    }

    /// Replace the element starting here by an EncryptedData of type Element:
    /// its tags and content go into the cipher until its end tag.
    pub(super) fn encrypt_element(&mut self, raw: &str, empty: bool) -> Result<(), EncryptError> {
        let Some(id) = self.ids.encrypted_element.clone() else {
            return self.write_tag(raw, empty);
        };
        let start = header::encrypted_data_start_for(
            &self.options.algorithms,
            &self.ids,
            &id,
            super::super::algorithms::uri::TYPE_ELEMENT,
        );
        let Sink::Plain(mut out) = std::mem::replace(&mut self.sink, Sink::Gone) else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        out.write_all(start.as_bytes())
            .map_err(EncryptError::Write)?;
        let Some(iv) = self.element_iv.take() else {
            return Err(EncryptError::Write(io::Error::other(
                "element IV already used",
            )));
        };
        let algorithm = self.options.algorithms.data_encryption;
        let writer = EncryptingWriter::with_iv(out, algorithm, &self.content_key, iv)?;
        self.sink = Sink::Cipher(writer);
        self.element_depth = Some(self.depth);
        self.write_tag(raw, empty)?;
        if empty {
            self.finish_element_encryption()?;
        }
        Ok(())
    }

    pub(super) fn finish_element_encryption(&mut self) -> Result<(), EncryptError> {
        let Sink::Cipher(writer) = std::mem::replace(&mut self.sink, Sink::Gone) else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        let (mut out, _) = writer.finish().map_err(EncryptError::Write)?;
        out.write_all(header::ENCRYPTED_DATA_END.as_bytes())
            .map_err(EncryptError::Write)?;
        self.sink = Sink::Plain(out);
        self.element_depth = None;
        // Never twice: a second element with the Id stays as it is.
        self.element_id = None;
        Ok(())
    }

    pub(super) fn begin_encryption(&mut self) -> Result<(), EncryptError> {
        let start = header::encrypted_data_start(&self.options.algorithms, &self.ids);
        let Sink::Plain(mut out) = std::mem::replace(&mut self.sink, Sink::Gone) else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        out.write_all(start.as_bytes())
            .map_err(EncryptError::Write)?;
        let Some(iv) = self.body_iv.take() else {
            return Err(EncryptError::Write(io::Error::other(
                "Body IV already used",
            )));
        };
        let algorithm = self.options.algorithms.data_encryption;
        let writer = EncryptingWriter::stepped(out, algorithm, &self.content_key, iv)?;
        self.sink = Sink::Cipher(writer);
        self.body = BodyState::Inside { saw_element: false };
        self.scan_pending = true;
        Ok(())
    }

    pub(super) fn finish_encryption(&mut self, body_end_name: &str) -> Result<(), EncryptError> {
        if self.body != (BodyState::Inside { saw_element: true }) {
            return Err(EncryptError::EmptyBody);
        }
        let Sink::Cipher(writer) = std::mem::replace(&mut self.sink, Sink::Gone) else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        let (mut out, plaintext) = writer.finish().map_err(EncryptError::Write)?;
        self.plaintext_bytes = plaintext;
        out.write_all(header::ENCRYPTED_DATA_END.as_bytes())
            .and_then(|_| out.write_all(b"</"))
            .and_then(|_| out.write_all(body_end_name.as_bytes()))
            .and_then(|_| out.write_all(b">"))
            .map_err(EncryptError::Write)?;
        self.sink = Sink::Plain(out);
        self.body = BodyState::Done;
        Ok(())
    }

    /// The Body's content, up to its end tag, through the Body scanner.
    pub(super) fn scan_body(&mut self) -> Result<(), EncryptError> {
        let start = body::BodyStart {
            position: self.position(),
            depth: self.depth,
            limits: self.options.limits,
            elements: self.elements,
        };
        let Sink::Cipher(out) = &mut self.sink else {
            return Err(EncryptError::Write(io::Error::other(
                "output in wrong state",
            )));
        };
        let scan = body::Scanner::new(self.reader.get_mut(), out, &mut self.scopes, start).run()?;
        self.scanned += scan.scanned;
        self.elements = scan.elements;
        self.body = BodyState::Inside {
            saw_element: scan.saw_element,
        };
        Ok(())
    }
}
