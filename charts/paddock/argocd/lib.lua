-- Paddock's Argo CD health check for one kind. Argo CD runs each kind's script on its own, so
-- every one starts with these helpers, shared by the five (charts/paddock/argocd/lib.lua),
-- followed by the kind's own check (argocd/health-<kind>.lua).

-- The condition of type `ctype` in `status`, or nil.
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

-- A condition as "reason: message" (or whichever of the two is set), else `fallback`.
local function describe(c, fallback)
  if c == nil then
    return fallback
  end
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

local function contains(s, part)
  return string.find(s, part, 1, true) ~= nil
end

-- The object's generation and the one `status` was computed from, when the status is behind
-- (observedGeneration < generation); nil when it is not, or either is unknown.
local function stale_generation(status)
  local generation = obj.metadata and obj.metadata.generation
  local observed = status and status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    return generation, observed
  end
  return nil
end

