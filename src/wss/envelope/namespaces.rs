//! Namespace declarations in scope while the envelope streams by: bindings per
//! open element, resolved in constant work per binding added or removed.

use super::*;

/// One namespace declaration: prefix ("" for the default) and the attribute value
/// as written (still escaped), plus its unescaped URI for comparisons.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub(super) prefix: String,
    pub(super) raw: String,
    pub(super) uri: String,
}

/// Namespace declarations of the open elements, innermost last.
///
/// Every operation costs constant work per binding it adds, removes or
/// returns: a prefix resolves through a map to the stack of its bindings, so
/// that neither many declarations nor many distinct prefixes make the parse
/// quadratic.
#[derive(Debug, Default)]
pub(super) struct NamespaceScopes {
    pub(super) bindings: Vec<Binding>,
    pub(super) marks: Vec<usize>,
    /// For each prefix, the indices in `bindings` that bind it, innermost last.
    pub(super) by_prefix: PrefixMap<String, Vec<usize>>,
    /// Changes whenever a binding is added or removed.
    pub(super) generation: u64,
}

thread_local! {
    /// Units of namespace work done on this thread (bindings visited, lookups):
    /// lets a test show the work grows linearly with the declarations.
    static NAMESPACE_WORK: Cell<u64> = const { Cell::new(0) };
}

#[inline]
pub(super) fn count_work(units: usize) {
    NAMESPACE_WORK.with(|w| w.set(w.get() + units as u64));
}

/// Units of namespace work done so far on the calling thread (see the tests
/// of linearity); encryption in [`encrypt_envelope`] runs on the caller's thread.
#[doc(hidden)]
pub fn namespace_work() -> u64 {
    NAMESPACE_WORK.with(Cell::get)
}

impl NamespaceScopes {
    #[inline]
    pub(super) fn push(&mut self, declared: Vec<Binding>) {
        self.marks.push(self.bindings.len());
        if !declared.is_empty() {
            count_work(declared.len());
            self.generation += 1;
            for b in declared {
                let index = self.bindings.len();
                match self.by_prefix.get_mut(b.prefix.as_str()) {
                    Some(stack) => stack.push(index),
                    None => {
                        self.by_prefix.insert(b.prefix.clone(), vec![index]);
                    }
                }
                self.bindings.push(b);
            }
        }
    }

    /// A scope that declares nothing.
    #[inline]
    pub(super) fn push_empty(&mut self) {
        self.marks.push(self.bindings.len());
    }

    #[inline]
    pub(super) fn pop(&mut self) {
        if let Some(mark) = self.marks.pop()
            && mark < self.bindings.len()
        {
            count_work(self.bindings.len() - mark);
            self.generation += 1;
            for b in self.bindings.drain(mark..).rev() {
                if let Some(stack) = self.by_prefix.get_mut(b.prefix.as_str()) {
                    stack.pop();
                    if stack.is_empty() {
                        self.by_prefix.remove(b.prefix.as_str());
                    }
                }
            }
        }
    }

    /// Namespace declarations in scope (shadowed ones included).
    pub(super) fn declarations(&self) -> usize {
        self.bindings.len()
    }

    pub(super) fn resolve(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(ns::XML);
        }
        count_work(1);
        let index = *self.by_prefix.get(prefix)?.last()?;
        Some(self.bindings[index].uri.as_str())
    }

    /// A non-default prefix currently bound to `uri`, if any (innermost first).
    pub(super) fn prefix_for(&self, uri: &str) -> Option<&str> {
        count_work(self.bindings.len());
        self.bindings
            .iter()
            .rev()
            .filter(|b| !b.prefix.is_empty() && b.uri == uri)
            .map(|b| b.prefix.as_str())
            .find(|p| self.resolve(p) == Some(uri))
    }

    /// Whether the default namespace currently is `uri`.
    pub(super) fn default_is(&self, uri: &str) -> bool {
        self.resolve("") == Some(uri)
    }

    /// The effective bindings in scope, one per prefix, undeclarations dropped,
    /// in declaration order.
    pub(super) fn in_scope(&self) -> Vec<Binding> {
        count_work(self.bindings.len());
        self.bindings
            .iter()
            .enumerate()
            .filter(|(i, b)| {
                !b.uri.is_empty()
                    && self
                        .by_prefix
                        .get(b.prefix.as_str())
                        .and_then(|stack| stack.last())
                        == Some(i)
            })
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// The binding made by the namespace declaration `key="raw"` (`key` is `xmlns`
/// or `xmlns:prefix`; `value` is `raw` normalized).
pub(super) fn namespace_binding(key: &str, raw: &str, value: String) -> Result<Binding, String> {
    let prefix = key.strip_prefix("xmlns:").unwrap_or("");
    if !prefix.is_empty() && value.is_empty() {
        return Err(format!("prefix {prefix} is undeclared"));
    }
    // Namespaces in XML: `xml` is bound to its namespace only, `xmlns` and the
    // xmlns namespace are never declared.
    if (prefix == "xml") != (value == ns::XML) || prefix == "xmlns" || value == XMLNS_NAMESPACE {
        return Err(format!(
            "reserved namespace prefix or name in declaration of {key}"
        ));
    }
    Ok(Binding {
        prefix: prefix.to_string(),
        raw: raw.to_string(),
        uri: value,
    })
}

/// A prefixed attribute name split at its colon: (prefix, local part).
pub(super) type QualifiedName<'a> = (&'a str, &'a str);

/// An element name split into prefix and local part.
pub(super) fn split_qname(name: &str) -> (&str, &str) {
    match name.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", name),
    }
}
