-- Signatures the signature policy checked: a signature (the manifest that
-- carries it, whose digest pins its blobs) checked for an image under a
-- policy (hash of its keys and constraints) is not checked again. Either
-- the verifiers that accepted it, or why none did; a signature whose blob
-- could not be read is not recorded (that may pass).
CREATE TABLE policy_verifications (
    image_digest TEXT NOT NULL,
    signature_digest TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    -- The verifiers that accepted the signature, comma-separated; empty
    -- when rejected.
    verifiers TEXT NOT NULL,
    -- Why no verifier accepted it; NULL when accepted.
    rejection TEXT,
    verified_at BIGINT NOT NULL,
    PRIMARY KEY (image_digest, signature_digest, policy_hash)
);
