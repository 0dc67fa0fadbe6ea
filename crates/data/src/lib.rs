//! placeholder replaced by the data helper
