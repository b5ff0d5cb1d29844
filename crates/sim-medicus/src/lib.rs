//! The Medicus simulator (PFS and Transactional JSON REST with per-call JWTs), in the dialect of shared/im1/medicus.md.
