//! The EMIS Web simulator (PFS and Partner API), in the dialect of shared/im1/emis.md.
