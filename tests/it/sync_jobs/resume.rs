//! A killed run resumed.
