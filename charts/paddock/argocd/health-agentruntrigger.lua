-- Argo CD health check for paddock.dev/AgentRunTrigger (argocd-cm key
-- resource.customizations.health.paddock.dev_AgentRunTrigger). Argo CD sets the global `obj`
-- to the object; the script returns {status = ..., message = ...}.
--
--   being deleted                                   Progressing
--   no status / no Ready condition yet              Progressing
--   Ready False (InvalidSchedule, InvalidTimeZone)  Degraded
--   spec.suspend, or Ready reason Suspended         Suspended
--   observedGeneration < generation                 Progressing (spec change not yet observed)
--   Ready True (Scheduled, or Listening: webhook)   Healthy
--   Ready Unknown                                   Progressing
--
-- A trigger that schedules normally is Healthy while its runs go on: they are AgentRuns and get
-- their own health. Staleness wins over Ready False (the edit may be the fix), spec.suspend over
-- staleness (what the user asked for; the operator creates nothing once it sees it). The message
-- is the Ready condition's message (reason: message), with the next due time, the runs going on
-- and the missed times. A webhook trigger (spec.webhook, no schedule) has no due times: its
-- message names its receiver, POST /hooks/<namespace>/<name>, and the runs going on.

-- "N runs active" (with the names of up to three) and ", N scheduled times missed" when any were.
local function runs(status)
  local active = status.active or {}
  local count = status.activeCount or #active
  local text = tostring(count) .. " runs active"
  if count == 1 then
    text = "1 run active"
  end
  if #active > 0 and #active <= 3 then
    text = text .. " (" .. table.concat(active, ", ") .. ")"
  end
  if status.missedSchedules ~= nil and status.missedSchedules > 0 then
    text = text .. ", " .. tostring(status.missedSchedules) .. " scheduled times missed"
  end
  return text
end

local status = obj.status
local ready = find_condition(status, "Ready")
local suspend = obj.spec ~= nil and obj.spec.suspend == true
local webhook = obj.spec ~= nil and obj.spec.webhook ~= nil and obj.spec.schedule == nil

-- The webhook receiver's path for this trigger, with its provider: "gitea deliveries to
-- POST /hooks/<namespace>/<name>".
local function receiver()
  local meta = obj.metadata or {}
  local provider = obj.spec.webhook.provider or "gitea"
  return provider .. " deliveries to POST /hooks/" .. tostring(meta.namespace) .. "/" .. tostring(meta.name)
end

-- The Ready condition's text for a webhook trigger, naming the receiver when it does not.
local function listening(c, fallback)
  local msg = describe(c, fallback)
  if not contains(msg, "/hooks/") then
    msg = msg .. " (" .. receiver() .. ")"
  end
  return msg
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  local msg = "AgentRunTrigger is being deleted"
  if ready ~= nil then
    msg = msg .. " (" .. describe(ready, "Ready " .. tostring(ready.status)) .. ")"
  end
  return { status = "Progressing", message = msg }
end

if ready == nil then
  if webhook then
    return { status = "Progressing", message = "Waiting for the Paddock operator to read the trigger's webhook (" .. receiver() .. ")" }
  end
  return { status = "Progressing", message = "Waiting for the Paddock operator to read the trigger's schedule" }
end

local generation, observed = stale_generation(status)
local stale = generation ~= nil

if ready.status == "False" and not stale then
  return { status = "Degraded", message = describe(ready, "The schedule cannot be used") }
end

if suspend and webhook then
  -- The operator keeps a suspended webhook trigger Listening; the receiver ignores its
  -- deliveries (answers 202) while spec.suspend is set.
  return {
    status = "Suspended",
    message = "Suspended by spec.suspend: deliveries are ignored (status: " .. listening(ready, "Listening") .. "); "
      .. runs(status),
  }
end

if suspend then
  local msg = describe(ready, "Suspended")
  if ready.reason ~= "Suspended" then
    msg = "Suspended by spec.suspend, not yet seen by the operator (status: " .. msg .. ")"
  end
  return { status = "Suspended", message = msg .. "; " .. runs(status) }
end

if stale then
  return {
    status = "Progressing",
    message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status of generation " .. tostring(observed) .. ": " .. describe(ready, "Ready "
      .. tostring(ready.status)) .. ")",
  }
end

if ready.reason == "Suspended" then
  return { status = "Suspended", message = describe(ready, "Suspended") .. "; " .. runs(status) }
end

if ready.status == "True" and webhook then
  return { status = "Healthy", message = listening(ready, "Listening") .. "; " .. runs(status) }
end

if ready.status == "True" then
  local msg = describe(ready, "Scheduled")
  local next_time = status.nextScheduleTime
  if next_time ~= nil and next_time ~= "" and not contains(msg, next_time) then
    msg = msg .. " (next run due at " .. next_time .. ")"
  end
  return { status = "Healthy", message = msg .. "; " .. runs(status) }
end
return { status = "Progressing", message = describe(ready, "Readiness unknown") }
