-- Signatures the signature policy verified: a signature (the manifest that
-- carries it) verified for an image under a policy (hash of its keys and
-- constraints) is not verified again. Only successes are kept: a refusal
-- is re-examined every run, so a signature added later is seen.
CREATE TABLE policy_verifications (
    image_digest TEXT NOT NULL,
    signature_digest TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    -- The verifiers that accepted the signature, comma-separated.
    verifiers TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    PRIMARY KEY (image_digest, signature_digest, policy_hash)
);
