"""The Lua scripts of the Redis stores (loaded once per server, run with EVALSHA).

Both scripts read the server's clock (`TIME`) so every replica agrees on one time line;
times are kept as seconds since `EPOCH` (a recent fixed instant, so that a double keeps
sub-microsecond precision). Numbers travel as strings formatted with ``%.17g``, which
round-trip a double exactly (a Lua number returned to Redis would be truncated to an
integer).

Limiter state, one string per key (O(1) per limit, whatever the traffic), with the same
meaning as the pure algorithms in `actors.resilience._limiter`:

=============  ==================================  =======================================
algorithm      value                               parameters (ARGV)
=============  ==================================  =======================================
token bucket   ``"<tokens> <last>"``               capacity, refill rate per second
GCRA           ``"<tat>"``                         emission interval, burst tolerance
sliding        ``"<start> <previous> <current>"``  limit, window
=============  ==================================  =======================================

A state with the wrong number of fields (the algorithm of a key was changed) is read as
absent: a full limit. A group's hold is one more string, ``"<until>"`` (seconds since
`EPOCH` on the server's clock), expiring with the hold.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BREAKER_SCRIPT", "EPOCH", "LIMITER_SCRIPT"]

EPOCH: Final = 1_700_000_000
"""Seconds subtracted from the server's Unix time in both scripts."""

LIMITER_SCRIPT: Final = r"""
-- KEYS[1]: the group's hold key; KEYS[2..]: limiter state keys (one group: one slot).
-- ARGV[1]: op: 'd' decide (all or nothing), 'c' charge, 'w' wait time, 'a' available,
--          'r' resync, 'h' hold.   ARGV[2]: expiry margin in seconds.
-- For 'h', ARGV[3] is the hold's length in seconds. Otherwise 4 arguments per state
-- key: kind ('t' token bucket, 'g' GCRA, 's' sliding window), two parameters, and the
-- cost (or, for 'r', the remaining units).
-- Returns {admitted 0/1, number as string}: for 'd' the retry_after (0 when admitted),
-- for 'w' the wait, for 'a' the units available, otherwise 0. A hold refuses 'd' and
-- lengthens 'w'.
-- Straight-line code on purpose: a script's body runs at every call, so every local
-- function would be a new closure per call (this halves the script's server time).
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
local op = ARGV[1]
local margin = tonumber(ARGV[2])
local EPS = 1e-9
local held = 0
local raw_hold = redis.call('GET', KEYS[1])
if raw_hold then
  local until_ = tonumber(raw_hold)
  if until_ and until_ > now then held = until_ - now end
end
if op == 'h' then
  local seconds = tonumber(ARGV[3])
  if seconds > held then
    redis.call('SET', KEYS[1], string.format('%.17g', now + seconds),
      'PX', math.ceil((seconds + margin) * 1000))
  end
  return {1, '0'}
end
local admitted, result = 1, 0
local wkeys, wvals, wttls = {}, {}, {}
for i = 2, #KEYS do
  local base = 2 + (i - 2) * 4
  local kind = ARGV[base + 1]
  local p1, p2, x = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local raw = redis.call('GET', KEYS[i])
  local ok, value, new, ttl = 1, 0, nil, 0
  if kind == 't' then
    -- token bucket: p1 capacity, p2 refill rate per second; state "tokens last"
    local cap, rps = p1, p2
    local tokens, last = cap, now
    if raw then
      local a, b = string.match(raw, '^(%S+) (%S+)$')
      if a then
        tokens, last = tonumber(a), tonumber(b)
        if now > last then
          tokens = tokens + (now - last) * rps
          last = now
        end
        if tokens > cap then tokens = cap end
      end
    end
    local nt = nil
    if op == 'd' then
      if x <= tokens + EPS * cap then nt = tokens - x
      else ok, value = 0, (x - tokens) / rps end
    elseif op == 'c' then nt = math.min(cap, tokens - x)
    elseif op == 'w' then value = math.max(0, (x - tokens) / rps)
    elseif op == 'a' then value = math.max(0, tokens)
    elseif op == 'r' then nt = math.min(tokens, x) end
    if nt then
      new = string.format('%.17g %.17g', nt, last)
      ttl = (cap - nt) / rps
    end
  elseif kind == 'g' then
    -- GCRA: p1 emission interval, p2 burst tolerance; state "tat"
    local ei, allowance = p1, p2 + p1
    local tat = now
    if raw then
      local stored = tonumber(raw)
      if stored and stored >= now then tat = stored end
    end
    local nt = nil
    if op == 'd' then
      local ahead = tat + x * ei - now
      if ahead <= allowance * (1 + EPS) then nt = tat + x * ei
      else ok, value = 0, ahead - allowance end
    elseif op == 'c' then nt = math.max(now, tat + x * ei)
    elseif op == 'w' then value = math.max(0, tat + x * ei - now - allowance)
    elseif op == 'a' then value = math.max(0, (allowance - (tat - now)) / ei)
    elseif op == 'r' then
      local excess = math.max(0, (allowance - (tat - now)) / ei) - x
      nt = tat + math.max(0, excess) * ei
    end
    if nt then
      new = string.format('%.17g', nt)
      ttl = nt - now
    end
  else
    -- sliding window counter: p1 limit, p2 window; state "start previous current",
    -- windows anchored at the first admission and re-anchored after two idle windows
    local limit, width = p1, p2
    local start, previous, current = now, 0, 0
    if raw then
      local a, b, c = string.match(raw, '^(%S+) (%S+) (%S+)$')
      if a then
        local old = tonumber(a)
        local passed = math.floor((now - old) / width + 1e-9)
        if passed <= 0 then
          start, previous, current = old, tonumber(b), tonumber(c)
        elseif passed == 1 then
          start, previous = old + width, tonumber(c)
        end
      end
    end
    local elapsed = math.min(1, math.max(0, (now - start) / width))
    local estimate = previous * (1 - elapsed) + current
    local wait = nil
    if op == 'd' then
      if estimate + x <= limit * (1 + EPS) then
        new = {start, previous, current + x}
      else
        ok, wait = 0, true
      end
    elseif op == 'c' then
      current = current + x
      if current < 0 then
        previous, current = math.max(0, previous + current), 0
      end
      new = {start, previous, current}
    elseif op == 'w' then wait = true
    elseif op == 'a' then value = math.max(0, limit - estimate)
    elseif op == 'r' then
      new = {start, previous, current + math.max(0, limit - estimate - x)}
    end
    if wait then
      local room = limit - current - x
      if estimate + x <= limit then value = 0
      elseif room >= 0 and previous > 0 then
        value = math.max(0, start + (1 - room / previous) * width - now)
      elseif x <= limit then
        local fraction = 0
        if current > 0 then fraction = math.max(0, 1 - (limit - x) / current) end
        value = math.max(0, start + width + fraction * width - now)
      else
        value = math.max(0, start + 2 * width - now) + (x - limit) / (limit / width)
      end
    end
    if new then
      new = string.format('%.17g %.17g %.17g', new[1], new[2], new[3])
      ttl = start + 2 * width - now
    end
  end
  if ok == 0 then
    admitted = 0
    if value > result then result = value end
  elseif op == 'w' then
    if value > result then result = value end
  elseif op == 'a' then
    result = value
  end
  if new then
    local n = #wkeys + 1
    wkeys[n], wvals[n], wttls[n] = KEYS[i], new, ttl
  end
end
if held > 0 and (op == 'd' or op == 'w') then
  if op == 'd' then admitted = 0 end
  if held > result then result = held end
end
if admitted == 1 then
  for j = 1, #wkeys do
    local ms = math.ceil((math.max(0, wttls[j]) + margin) * 1000)
    redis.call('SET', wkeys[j], wvals[j], 'PX', ms)
  end
end
return {admitted, string.format('%.17g', result)}
"""

BREAKER_SCRIPT: Final = r"""
-- KEYS[i]: breaker record keys.  ARGV[i]: a record to store, or '' to only read.
-- A record is '<generation>|<state>|<since>|<open_duration>|<open_base>' (since in
-- seconds since EPOCH on the server's clock, or empty). A record is stored only when
-- its generation is higher than the stored one (first writer of a generation wins).
-- Returns {seconds, microseconds, stored record or '' for each key}.
local function generation(record) return tonumber(string.match(record, '^(%d+)|')) end
local out = {}
local t = redis.call('TIME')
out[1] = t[1]
out[2] = t[2]
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  local proposed = ARGV[i]
  if proposed ~= '' and (not current or generation(proposed) > generation(current)) then
    redis.call('SET', KEYS[i], proposed)
    current = proposed
  end
  out[i + 2] = current or ''
end
return out
"""
