-- 2 -> 3: events whose runs were created in the commit that stored them (the process that
-- received the event started the functions it triggers, none of them under flow control): the
-- event-log matcher leaves their triggers alone and matches only pauses.
ALTER TABLE events ADD COLUMN IF NOT EXISTS started boolean NOT NULL DEFAULT false;
