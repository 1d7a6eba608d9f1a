//! Lossless NGINX config parser (ours). Being written; see ARCHITECTURE.md.
