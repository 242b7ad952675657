-- Argo CD health check for paddock.dev/ApprovalGate (argocd-cm key
-- resource.customizations.health.paddock.dev_ApprovalGate). Argo CD sets the global `obj` to
-- the object; the script returns {status = ..., message = ...}.
--
--   no status / no state yet                          Progressing
--   Pending                                           Suspended  (waiting for a human decision)
--   Pending, observedGeneration < generation          Progressing (new decisions not yet counted)
--   Approved                                          Healthy
--   Expired with spec.onTimeout Approve               Healthy    (expiry approved the run)
--   Rejected, Expired (onTimeout Reject, the default)  Degraded
--   Withdrawn                                         Healthy    (its run ended or retried first:
--                                                                 nothing waits for a decision)
--
-- Decided gates are final (their spec cannot change any more). The message is the `Decided`
-- condition's message (reason: message), else the state.

local status = obj.status
local state = nil
if status ~= nil then
  state = status.state
end
if state == nil or state == "" then
  return { status = "Progressing", message = "Waiting for the Paddock operator to evaluate the gate" }
end

local decided = find_condition(status, "Decided")

if state == "Approved" then
  return { status = "Healthy", message = describe(decided, "Approved") }
end
if state == "Rejected" then
  return { status = "Degraded", message = describe(decided, "Rejected") }
end
if state == "Expired" then
  local on_timeout = "Reject"
  if obj.spec ~= nil and obj.spec.onTimeout ~= nil then
    on_timeout = obj.spec.onTimeout
  end
  if on_timeout == "Approve" then
    return { status = "Healthy", message = describe(decided, "Expired; onTimeout Approve") }
  end
  return { status = "Degraded", message = describe(decided, "Expired; onTimeout Reject") }
end

if state == "Withdrawn" then
  return { status = "Healthy", message = describe(decided, "Withdrawn without a decision") }
end

if state == "Pending" then
  local generation, observed = stale_generation(status)
  if generation ~= nil then
    return {
      status = "Progressing",
      message = "Waiting for the operator to count the latest decisions (generation "
        .. tostring(generation) .. "; status of generation " .. tostring(observed) .. ": "
        .. describe(decided, "Pending") .. ")",
    }
  end
  local msg = describe(decided, "Waiting for a decision")
  if status.expiresAt ~= nil then
    msg = msg .. "; expires at " .. status.expiresAt
  end
  return { status = "Suspended", message = msg }
end

return { status = "Unknown", message = "Unknown ApprovalGate state " .. tostring(state) }
