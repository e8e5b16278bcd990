-- 5 -> 6: events whose runs were created in the commit that stored them (the process that
-- received the event started the functions it triggers, none of them under flow control): the
-- event-log matcher leaves their triggers alone and matches only pauses.
ALTER TABLE events ADD COLUMN IF NOT EXISTS started boolean NOT NULL DEFAULT false;
-- Events left to the matchers, by id: a run started with its event must not take the keys of
-- an earlier event with the same id that is not matched yet.
CREATE INDEX IF NOT EXISTS events_unstarted ON events (event_id) WHERE NOT started;
