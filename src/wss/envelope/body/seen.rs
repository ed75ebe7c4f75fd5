//! Start tags already checked in full, remembered by their bytes and the
//! namespace bindings they were checked under, so repeats cost a comparison.

use super::*;

/// Start tags that were checked and declare no namespace, by their bytes.
///
/// Bodies are mostly lists of records: the same tags (`<ns:amount>`,
/// `<ns:item type="x">`) again and again. A tag whose exact bytes passed every
/// check (name, attributes, prefixes) in the same namespace bindings passes
/// them again, so only its depth is checked and the element is tracked. A tag
/// with one attribute is kept up to that attribute's value (`<ns:item no="`),
/// since records repeat it with other values: the value and the tag's end are
/// then checked, and anything else after the value takes the full path.
/// Bindings are identified by [`NamespaceScopes::generation`], which changes
/// whenever one is added or removed; tags that declare namespaces and the
/// Body's top-level elements (which are rewritten) are never remembered.
#[derive(Default)]
pub(super) struct SeenTags {
    pub(super) slots: [SeenSlot; SEEN_SLOTS],
}

pub(super) const SEEN_SLOTS: usize = 16;
/// Longer tags are not remembered.
pub(super) const SEEN_BYTES: usize = 32;

#[derive(Clone, Copy, Default)]
pub(super) struct SeenSlot {
    /// `bytes[..tag.len]` is the tag, `<` to `>`; an empty slot has `len` 0.
    pub(super) bytes: [u8; SEEN_BYTES],
    pub(super) tag: SeenTag,
    pub(super) generation: u64,
}

#[derive(Clone, Copy, Default)]
pub(super) struct SeenTag {
    /// Bytes remembered: the whole tag, or up to its one attribute's value.
    pub(super) len: usize,
    pub(super) name_len: usize,
    /// The tag ends in `/>` (whole tags).
    pub(super) empty: bool,
    /// `len` ends after the quote that opens the tag's only attribute value.
    pub(super) value_follows: bool,
}

impl SeenTags {
    /// The slot for a tag: by the eight bytes after `<`.
    #[inline(always)]
    pub(super) fn slot(text: &[u8]) -> Option<usize> {
        let word = word_at(text, 1)?;
        Some((word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SEEN_SLOTS)
    }

    /// The tag `text` starts with, if it was seen under `generation`.
    #[inline]
    pub(super) fn find(&self, text: &[u8], generation: u64) -> Option<SeenTag> {
        let slot = &self.slots[Self::slot(text)?];
        let len = slot.tag.len;
        let known = len != 0
            && slot.generation == generation
            && text.len() >= len
            && same(&text[..len], &slot.bytes[..len]);
        known.then_some(slot.tag)
    }

    /// Tags shorter than nine bytes (no word after `<`) are not remembered.
    pub(super) fn insert(&mut self, tag: &[u8], seen: SeenTag, generation: u64) {
        if tag.len() > SEEN_BYTES {
            return;
        }
        if let Some(slot) = Self::slot(tag) {
            let slot = &mut self.slots[slot];
            slot.bytes[..tag.len()].copy_from_slice(tag);
            slot.tag = seen;
            slot.generation = generation;
        }
    }
}
