-- Argo CD health check for paddock.dev/RunnerPool (argocd-cm key
-- resource.customizations.health.paddock.dev_RunnerPool). Argo CD sets the global `obj` to the
-- object; the script returns {status = ..., message = ...}.
--
--   no status / no Ready condition yet           Progressing
--   observedGeneration < generation              Progressing (spec change not yet observed)
--   Ready True                                   Healthy
--   Ready False                                  Degraded
--   Ready Unknown                                Progressing
--
-- The message is the Ready condition's message (reason: message).

local status = obj.status
local ready = find_condition(status, "Ready")
if ready == nil then
  return { status = "Progressing", message = "Waiting for the Paddock operator to check the pool" }
end

local generation, observed = stale_generation(status)
if generation ~= nil then
  return {
    status = "Progressing",
    message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status of generation " .. tostring(observed) .. ": " .. describe(ready, "Ready "
      .. tostring(ready.status)) .. ")",
  }
end

if ready.status == "True" then
  return { status = "Healthy", message = describe(ready, "Ready") }
end
if ready.status == "False" then
  return { status = "Degraded", message = describe(ready, "Not ready") }
end
return { status = "Progressing", message = describe(ready, "Readiness unknown") }
