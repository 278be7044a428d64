//! Registration (lane C).
