//! The TPP SystmOne simulator (PFS XML over HTTP, Client Integration framed XML over TCP), in the dialect of shared/im1/systmone.md.
