targetScope = 'resourceGroup'

metadata name = 'Access review reminders'
metadata description = 'Function app that reminds reviewers of active Microsoft Entra access reviews, with a managed identity, keyless storage, Entra-only telemetry and its one Graph app role.'

@description('Required. Name of the azd environment. It goes into the azd-env-name tag and seeds the resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Optional. Azure region of every resource. It must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Optional. Tags added to every resource, next to azd-env-name.')
param tags object = {}

@description('Optional. UserAssigned creates a managed identity that outlives the app, SystemAssigned uses the identity of the app itself.')
param identityType identityKind = 'UserAssigned'

@description('Optional. Python version of the Functions runtime. Keep it equal to the version the tests run on.')
param pythonVersion string = '3.11'

@description('Optional. Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Maximum number of instances the app scales out to. The reminder jobs need one, and 40 is the lowest value that Flex Consumption accepted when this template was written.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Optional. Microsoft Graph service root without a path (GRAPH_ENDPOINT). Change it only for a national cloud.')
param graphEndpoint string = 'https://graph.microsoft.com'

@description('Optional. NCRONTAB schedule of the reminder run, with seconds and in UTC (REMINDER_SCHEDULE). Flex Consumption has no time zone setting.')
param reminderSchedule string = '0 0 8 * * 1-5'

@description('Optional. Access review definition ids to send reminders for (REMINDER_DEFINITION_IDS). Empty covers every definition.')
param reminderDefinitionIds string[] = []

@description('Optional. The timer reminds only instances that end within this many days (REMINDER_ENDING_WITHIN_DAYS). Null covers every end date.')
@minValue(0)
@maxValue(365)
param reminderEndingWithinDays int?

@description('Optional. Whether the timer only reports what it would send, and sends nothing (REMINDER_DRY_RUN).')
param reminderDryRun bool = false

@description('Optional. Whether both triggers skip instances in which every reviewer has already decided (REMINDER_PENDING_CHECK).')
param reminderPendingCheck bool = true

@description('Optional. Hours within which an instance is not reminded again, unless a request says force (REMINDER_COOLDOWN_HOURS). 0 turns the cooldown off.')
@minValue(0)
@maxValue(720)
param reminderCooldownHours int = 20

@description('Optional. Prefix of the reminder ledger and job tables in the host storage account (REMINDER_TABLE_PREFIX): {prefix}ledger and {prefix}jobs.')
@minLength(2)
@maxLength(57)
param reminderTablePrefix string = 'reminder'

@description('Optional. Seconds within which a reminder request should be answered (REMINDER_SYNC_BUDGET_SECONDS). A request expected to take longer is answered 202 and runs from a queue.')
@minValue(5)
@maxValue(110)
param reminderSyncBudgetSeconds int = 60

@description('Optional. Maximum number of Graph requests that the app sends at once (GRAPH_MAX_CONCURRENCY).')
@minValue(1)
@maxValue(32)
param graphMaxConcurrency int = 4

@description('Optional. Timeout of one Graph request in seconds (GRAPH_TIMEOUT_SECONDS).')
@minValue(1)
@maxValue(60)
param graphTimeoutSeconds int = 30

@description('Optional. Seconds that the retries of one Graph request may take in total (GRAPH_RETRY_BUDGET_SECONDS).')
@minValue(0)
@maxValue(100)
param graphRetryBudgetSeconds int = 45

@description('Optional. Whether this deployment grants the Graph app role AccessReview.ReadWrite.All to the app identity. Set false when the deployer has no Graph rights, and grant it by hand as docs/deploy.md describes.')
param grantGraphPermission bool = true

@description('Optional. Whether App Service authentication requires a Microsoft Entra ID token on every request. False leaves function keys as the only guard.')
param enableEntraAuthentication bool = false

@description('Optional. Client id of the app registration that callers request tokens for. Required when enableEntraAuthentication is true.')
param entraAudienceClientId string?

@description('Optional. Client (application) ids of the callers that Entra ID authentication admits.')
param allowedCallerApplicationIds string[] = []

@description('Optional. Object (principal) ids of the callers that Entra ID authentication admits, for example the principal id of a Logic App managed identity.')
param allowedCallerPrincipalIds string[] = []

@description('Optional. Days that Log Analytics keeps the app logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

var useUserAssignedIdentity = identityType == 'UserAssigned'

// One hash of subscription, resource group, environment and region keeps the names stable across
// redeployments and, in practice, unique across Azure.
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))

var resourceTags = union(tags, {
  'azd-env-name': environmentName
})

// The settings that the app code reads (review_reminders/settings.py), one per parameter above.
// AZURE_CLIENT_ID is set by the function app module because it follows the identity.
var reminderAppSettings = {
  GRAPH_ENDPOINT: graphEndpoint
  REMINDER_SCHEDULE: reminderSchedule
  REMINDER_DEFINITION_IDS: join(reminderDefinitionIds, ',')
  // An empty value means no end-date filter.
  REMINDER_ENDING_WITHIN_DAYS: reminderEndingWithinDays == null ? '' : string(reminderEndingWithinDays)
  REMINDER_DRY_RUN: string(reminderDryRun)
  REMINDER_PENDING_CHECK: string(reminderPendingCheck)
  REMINDER_COOLDOWN_HOURS: string(reminderCooldownHours)
  REMINDER_TABLE_PREFIX: reminderTablePrefix
  REMINDER_SYNC_BUDGET_SECONDS: string(reminderSyncBudgetSeconds)
  GRAPH_MAX_CONCURRENCY: string(graphMaxConcurrency)
  GRAPH_TIMEOUT_SECONDS: string(graphTimeoutSeconds)
  GRAPH_RETRY_BUDGET_SECONDS: string(graphRetryBudgetSeconds)
}

module identity 'modules/identity.bicep' = if (useUserAssignedIdentity) {
  name: 'identity'
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: resourceTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: resourceTags
    deploymentContainerName: 'app-package'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: resourceTags
    retentionInDays: logRetentionInDays
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: 'func-${resourceToken}'
    planName: 'asp-${resourceToken}'
    location: location
    tags: resourceTags
    azdServiceName: 'reminders'
    userAssignedIdentity: useUserAssignedIdentity ? {
      resourceId: identity!.outputs.resourceId
      clientId: identity!.outputs.clientId
      principalId: identity!.outputs.principalId
    } : null
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    // The reminder ledger and the job state live in tables, and long jobs go through a queue.
    useQueuesAndTables: true
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: reminderAppSettings
  }
}

module roleAssignments 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    // The reminder ledger and the job state live in tables, and long jobs go through a queue.
    useQueuesAndTables: true
  }
}

module graphPermission 'modules/graph-permission.bicep' = if (grantGraphPermission) {
  name: 'graph-permission'
  params: {
    principalId: functionApp.outputs.principalId
  }
}

module appAuthentication 'modules/app-authentication.bicep' = {
  name: 'app-authentication'
  params: {
    functionAppName: functionApp.outputs.name
    enabled: enableEntraAuthentication
    audienceClientId: entraAudienceClientId
    allowedClientApplicationIds: allowedCallerApplicationIds
    allowedPrincipalIds: allowedCallerPrincipalIds
  }
}

@description('Required. Name of the function app, which azd deploys the code to.')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Required. HTTPS URL of the function app.')
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'

@description('Required. Object (principal) id of the app identity, which holds the storage roles and the Graph app role.')
output AZURE_FUNCTION_APP_PRINCIPAL_ID string = functionApp.outputs.principalId

@description('Optional. Client id of the user-assigned identity, or null when the app uses its system-assigned identity.')
output AZURE_FUNCTION_APP_CLIENT_ID string? = useUserAssignedIdentity ? identity!.outputs.clientId : null

@description('Required. Whether this deployment granted the Graph app role. False means an administrator grants it by hand.')
output GRAPH_PERMISSION_GRANTED bool = grantGraphPermission

@description('Kind of managed identity that the function app runs as.')
type identityKind = 'UserAssigned' | 'SystemAssigned'
