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

local function find_condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  local reason = c.reason
  local message = c.message
  if message ~= nil and message ~= "" and reason ~= nil and reason ~= "" then
    return reason .. ": " .. message
  end
  if message ~= nil and message ~= "" then
    return message
  end
  if reason ~= nil and reason ~= "" then
    return reason
  end
  return fallback
end

local status = obj.status
local ready = find_condition(status, "Ready")
if ready == nil then
  return { status = "Progressing", message = "Waiting for the Paddock operator to check the pool" }
end

local generation = obj.metadata and obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
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
