//! wire format
