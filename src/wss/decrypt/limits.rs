//! The route's XML limits on a parsed document: what the decryptor reads and
//! what it produces are held to the same bounds as what the encryptor reads.
//! One pass over the nodes in document order, without recursion: a node's depth
//! is its parent's plus one, kept by node index.

use roxmltree::Document;

use super::super::{Limits, XmlLimit};

/// A document over one of the XML limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the document exceeds the XML limit {limit} ({value})")]
pub struct LimitExceeded {
    pub limit: XmlLimit,
    pub value: u64,
}

impl LimitExceeded {
    /// Over `max_elements` (the parser's node budget ran out).
    pub(super) fn elements(limits: Option<&Limits>) -> LimitExceeded {
        LimitExceeded {
            limit: XmlLimit::MaxElements,
            value: limits.and_then(|l| l.max_elements).unwrap_or(0),
        }
    }
}

/// The parser's node budget for `max_elements`: elements, the text between
/// them, comments and the root.
pub(super) fn nodes_limit(limits: &Limits) -> u32 {
    limits.max_elements.map_or(u32::MAX, |e| {
        u32::try_from(e.saturating_mul(2).saturating_add(64)).unwrap_or(u32::MAX)
    })
}

pub(super) fn check(doc: &Document<'_>, limits: &Limits) -> Result<(), LimitExceeded> {
    let over = |limit, value: u64| Err(LimitExceeded { limit, value });
    let max_text = limits.max_text_length.unwrap_or(u64::MAX);
    let mut depths = vec![0usize; doc.descendants().len()];
    let mut elements = 0u64;
    for node in doc.descendants() {
        if node.is_text() {
            if node.text().map_or(0, str::len) as u64 > max_text {
                return over(XmlLimit::MaxTextLength, max_text);
            }
            continue;
        }
        if !node.is_element() {
            continue;
        }
        let parent_depth = node
            .parent()
            .and_then(|p| depths.get(p.id().get_usize()).copied())
            .unwrap_or(0);
        let depth = parent_depth + 1;
        if let Some(slot) = depths.get_mut(node.id().get_usize()) {
            *slot = depth;
        }
        elements += 1;
        if depth > limits.max_depth {
            return over(XmlLimit::MaxDepth, limits.max_depth as u64);
        }
        if let Some(max) = limits.max_elements
            && elements > max
        {
            return over(XmlLimit::MaxElements, max);
        }
        let attributes = node.attributes();
        if attributes.len() > limits.max_attributes_per_element {
            return over(
                XmlLimit::MaxAttributesPerElement,
                limits.max_attributes_per_element as u64,
            );
        }
        if node.tag_name().name().len() > limits.max_name_length {
            return over(XmlLimit::MaxNameLength, limits.max_name_length as u64);
        }
        for a in attributes {
            if a.name().len() > limits.max_name_length {
                return over(XmlLimit::MaxNameLength, limits.max_name_length as u64);
            }
            if a.value().len() as u64 > max_text {
                return over(XmlLimit::MaxTextLength, max_text);
            }
        }
    }
    Ok(())
}
