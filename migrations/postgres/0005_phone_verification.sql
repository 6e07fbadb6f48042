-- Phone verification (contract v1.2). `users.phone` keeps its UNIQUE constraint and now holds
-- only a phone its owner has proven (an OTP sign-in or POST /me/phone/verify); a phone given
-- at registration or through PATCH /me waits, unverified and not unique, in
-- `unverified_phone` until proven. So a verified number belongs to one account, while anyone
-- may claim any number without blocking (or learning about) its owner. The API shows
-- `phone` = COALESCE(phone, unverified_phone), `phone_verified` = phone IS NOT NULL.
--
-- Existing rows: accounts without an email were created by OTP sign-in, so their phone was
-- proven and stays. A phone next to an email was only ever typed in: it becomes unverified.
-- E.164, not unique; an account holds a verified phone or an unverified one, not both.
ALTER TABLE users ADD COLUMN unverified_phone text;
UPDATE users SET unverified_phone = phone, phone = NULL WHERE email IS NOT NULL AND phone IS NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_one_phone CHECK (unverified_phone IS NULL OR phone IS NULL);
CREATE INDEX users_unverified_phone_idx ON users (unverified_phone) WHERE unverified_phone IS NOT NULL;

-- OTP wrong tries are counted per phone across codes: a resend starts a fresh code (with its
-- own 5 tries) but not a fresh budget; `failures` tries are spent in the window that ends at
-- `failures_reset_at`. A used code is marked, not deleted, so its phone's budget outlives it;
-- the periodic sweep deletes rows whose code and window are both over.
ALTER TABLE otp_codes ADD COLUMN used_at timestamptz;
ALTER TABLE otp_codes ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE otp_codes ADD COLUMN failures_reset_at timestamptz;
