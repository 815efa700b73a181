-- The whole schema of the first PostgreSQL store. Timestamps are timestamptz; the JSON
-- bodies are jsonb. Several replicas share these tables, so every rule that keeps two
-- of them from doing the same thing twice is a constraint here, not a check in Python.

CREATE TABLE rollbacks (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id text PRIMARY KEY,
    service text NOT NULL,
    environment text NOT NULL,
    state text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    finished_at timestamptz,
    -- service/environment while the rollback is open (and not a dry run), else NULL:
    -- one open rollback per service+environment is this unique constraint.
    open_key text CONSTRAINT rollbacks_open UNIQUE,
    data jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX rollbacks_target ON rollbacks (service, environment, created_at);
CREATE INDEX rollbacks_state ON rollbacks (state, created_at);
CREATE INDEX rollbacks_created ON rollbacks (created_at);

CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rollback_id text NOT NULL REFERENCES rollbacks (id),
    at timestamptz NOT NULL,
    actor text NOT NULL,
    kind text NOT NULL,
    text text NOT NULL
);
CREATE INDEX events_rollback ON events (rollback_id, at, seq);

CREATE TABLE approvals (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rollback_id text NOT NULL REFERENCES rollbacks (id),
    approver text NOT NULL,
    at timestamptz NOT NULL,
    CONSTRAINT approvals_once UNIQUE (rollback_id, approver)
);

CREATE TABLE audit (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    rollback_id text,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_rollback ON audit (rollback_id, seq);

CREATE TABLE checklist (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rollback_id text NOT NULL REFERENCES rollbacks (id),
    item text NOT NULL,
    done boolean NOT NULL,
    actor text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX checklist_rollback ON checklist (rollback_id, seq);

-- The audit log and the checklist history are append-only, for every client.
CREATE FUNCTION rollbot_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION rollbot_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION rollbot_append_only();
CREATE TRIGGER checklist_append_only BEFORE UPDATE OR DELETE ON checklist
    FOR EACH ROW EXECUTE FUNCTION rollbot_append_only();
CREATE TRIGGER checklist_no_truncate BEFORE TRUNCATE ON checklist
    FOR EACH STATEMENT EXECUTE FUNCTION rollbot_append_only();

CREATE TABLE deliveries (
    rollback_id text NOT NULL REFERENCES rollbacks (id),
    key text NOT NULL,
    actor text NOT NULL,
    at timestamptz NOT NULL,
    channel text,
    ts text,
    body text,
    PRIMARY KEY (rollback_id, key)
);

CREATE TABLE jobs (
    id text PRIMARY KEY,
    rollback_id text NOT NULL REFERENCES rollbacks (id),
    kind text NOT NULL,
    due_at timestamptz NOT NULL,
    state text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    attempts integer NOT NULL DEFAULT 0,
    claim text,
    lease_until timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, due_at);
CREATE INDEX jobs_rollback ON jobs (rollback_id, kind);

-- A service+environment's lease: one row per key, its token drawn from one sequence so
-- every grant's token is larger than any before it (fencing).
CREATE SEQUENCE lease_tokens;
CREATE TABLE leases (
    key text PRIMARY KEY,
    holder text NOT NULL,
    rollback_id text NOT NULL,
    owner text NOT NULL,
    token bigint NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL
);

-- Slack requests seen, by idempotency key, shared by every replica.
CREATE TABLE requests (key text PRIMARY KEY, at timestamptz NOT NULL);
CREATE INDEX requests_at ON requests (at);
