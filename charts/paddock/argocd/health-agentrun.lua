-- Argo CD health check for paddock.dev/AgentRun (argocd-cm key
-- resource.customizations.health.paddock.dev_AgentRun). Argo CD sets the global `obj` to the
-- object; the script returns {status = ..., message = ...}.
--
--   no status / no phase yet                        Progressing
--   Pending, Queued, Running                        Progressing
--   AwaitingApproval                                Suspended  (a human must decide a gate)
--   Succeeded                                       Healthy
--   Failed, TimedOut, Cancelled, Rejected           Degraded
--   non-terminal and observedGeneration < generation  Progressing (status not yet recomputed)
--   being deleted                                   Progressing
--
-- Terminal phases are final (the operator never rewrites a finished run's status, so its
-- observedGeneration may stay behind after a late spec.cancel): they win over staleness.
-- The message is the matching condition's message (reason: message), else the phase.

-- The condition that describes the current phase best.
local function current_condition(status, phase)
  local c = nil
  if phase == "AwaitingApproval" or phase == "Queued" or phase == "Running" then
    c = find_condition(status, phase)
  end
  return c or find_condition(status, "Succeeded")
end

local status = obj.status
local phase = nil
if status ~= nil then
  phase = status.phase
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  local msg = "AgentRun is being deleted"
  if phase ~= nil and phase ~= "" then
    msg = msg .. " (" .. phase .. ": " .. describe(current_condition(status, phase), phase) .. ")"
  end
  return { status = "Progressing", message = msg }
end

if phase == nil or phase == "" then
  return { status = "Progressing", message = "Waiting for the Paddock operator to accept the run" }
end

local terminal = {
  Succeeded = "Healthy",
  Failed = "Degraded",
  TimedOut = "Degraded",
  Cancelled = "Degraded",
  Rejected = "Degraded",
}
local succeeded = find_condition(status, "Succeeded")
if terminal[phase] ~= nil then
  return { status = terminal[phase], message = describe(succeeded, "Run " .. phase) }
end

local generation, observed = stale_generation(status)
if generation ~= nil then
  return {
    status = "Progressing",
    message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status is of generation " .. tostring(observed) .. ": " .. phase .. ", "
      .. describe(current_condition(status, phase), phase) .. ")",
  }
end

if phase == "AwaitingApproval" then
  local msg = describe(find_condition(status, "AwaitingApproval"), "Waiting for approval")
  local gate = status.gateName
  if gate ~= nil and gate ~= "" and not contains(msg, gate) then
    msg = msg .. " (ApprovalGate " .. gate .. ")"
  end
  return { status = "Suspended", message = msg }
end

if phase == "Queued" then
  local msg = describe(find_condition(status, "Queued"), "Waiting for capacity in the pool")
  if status.queuePosition ~= nil then
    msg = msg .. " (queue position " .. tostring(status.queuePosition) .. ")"
  end
  return { status = "Progressing", message = msg }
end

if phase == "Running" then
  return { status = "Progressing", message = describe(find_condition(status, "Running"), "Run is running") }
end

if phase == "Pending" then
  return { status = "Progressing", message = describe(succeeded, "Run is pending") }
end

return { status = "Unknown", message = "Unknown AgentRun phase " .. tostring(phase) }
