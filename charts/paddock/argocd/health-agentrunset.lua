-- Argo CD health check for paddock.dev/AgentRunSet (argocd-cm key
-- resource.customizations.health.paddock.dev_AgentRunSet). Argo CD sets the global `obj` to
-- the object; the script returns {status = ..., message = ...}.
--
--   no status / no phase yet                        Progressing
--   Running                                         Progressing
--   Selecting                                       Suspended  (a human must pick the winner
--                                                               on the set's Pick gate)
--   Succeeded                                       Healthy
--   Failed, Cancelled                               Degraded
--   non-terminal and observedGeneration < generation  Progressing (status not yet recomputed)
--   being deleted                                   Progressing
--
-- Terminal phases are final (the operator keeps a finished set's phase and Succeeded
-- condition): they win over staleness. The message is the Succeeded condition's message
-- (reason: message), else the candidate counts or the phase.

-- "N of M candidates done, V verified" from the status counts, or nil before the first count.
local function counts(status)
  if status == nil or status.total == nil then
    return nil
  end
  local text = tostring(status.finished or 0) .. " of " .. tostring(status.total) .. " candidates done"
  if status.verified ~= nil then
    text = text .. ", " .. tostring(status.verified) .. " verified"
  end
  return text
end

local status = obj.status
local phase = nil
if status ~= nil then
  phase = status.phase
end
local succeeded = find_condition(status, "Succeeded")

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  local msg = "AgentRunSet is being deleted"
  if phase ~= nil and phase ~= "" then
    msg = msg .. " (" .. phase .. ": " .. describe(succeeded, phase) .. ")"
  end
  return { status = "Progressing", message = msg }
end

if phase == nil or phase == "" then
  return { status = "Progressing", message = "Waiting for the Paddock operator to start the set's candidates" }
end

local winner = status.winner
if phase == "Succeeded" then
  local fallback = "Set succeeded"
  if winner ~= nil and winner ~= "" then
    fallback = "candidate " .. winner .. " won"
  end
  local msg = describe(succeeded, fallback)
  if winner ~= nil and winner ~= "" and not contains(msg, winner) then
    msg = msg .. " (winner " .. winner .. ")"
  end
  return { status = "Healthy", message = msg }
end
if phase == "Failed" or phase == "Cancelled" then
  return { status = "Degraded", message = describe(succeeded, "Set " .. phase) }
end

local generation, observed = stale_generation(status)
if generation ~= nil then
  return {
    status = "Progressing",
    message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status is of generation " .. tostring(observed) .. ": " .. phase .. ", "
      .. describe(succeeded, phase) .. ")",
  }
end

local done = counts(status)

if phase == "Selecting" then
  local msg = describe(succeeded, "Every candidate is done; waiting for a human to pick the winner")
  local gate = status.gateName
  if gate ~= nil and gate ~= "" and not contains(msg, gate) then
    msg = msg .. " (ApprovalGate " .. gate .. ")"
  end
  if done ~= nil then
    msg = msg .. "; " .. done
  end
  local set = (obj.metadata and obj.metadata.name) or "<set>"
  local ns = obj.metadata and obj.metadata.namespace
  local cmd = "kubectl paddock pick "
  if ns ~= nil and ns ~= "" then
    cmd = cmd .. "-n " .. ns .. " "
  end
  msg = msg .. "; pick one with: " .. cmd .. set .. " <candidate>"
  return { status = "Suspended", message = msg }
end

if phase == "Running" then
  local msg = describe(succeeded, done or "Candidates are running")
  if succeeded ~= nil and done ~= nil and not contains(msg, "candidates done") then
    msg = msg .. " (" .. done .. ")"
  end
  return { status = "Progressing", message = msg }
end

return { status = "Unknown", message = "Unknown AgentRunSet phase " .. tostring(phase) }
