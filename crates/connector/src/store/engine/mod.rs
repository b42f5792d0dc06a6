pub(crate) mod compact;
pub(crate) mod compact_error;
pub(crate) mod compact_swap;
