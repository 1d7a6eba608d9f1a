//! passwd/group parsing without NSS. Being written.
