metadata name = 'Function app'
metadata description = 'Flex Consumption plan and Linux Python function app that reaches storage and Application Insights with its managed identity.'

@description('Required. Name of the function app, which is also its host name prefix.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Azure region of the plan and the app. It must offer Flex Consumption.')
param location string

@description('Required. Tags applied to the plan and the app.')
param tags object

@description('Required. Value of the azd-service-name tag, which azd uses to find the app to deploy the code to.')
param azdServiceName string

@description('Optional. User-assigned identity that the app runs as. Null gives the app a system-assigned identity instead.')
param userAssignedIdentity userAssignedIdentityInfo?

@description('Required. Blob service endpoint of the host storage account, ending in a slash.')
param blobEndpoint string

@description('Required. Queue service endpoint of the host storage account, ending in a slash.')
param queueEndpoint string

@description('Required. Table service endpoint of the host storage account, ending in a slash.')
param tableEndpoint string

@description('Required. URL of the blob container that Flex Consumption reads the app package from.')
param deploymentContainerUrl string

@description('Optional. Whether the app uses queues and tables in the host storage account, which adds their service URIs to the app settings.')
param useQueuesAndTables bool = false

@description('Required. Connection string of the Application Insights component.')
param applicationInsightsConnectionString string

@description('Optional. Python version of the Flex Consumption runtime.')
param pythonVersion string = '3.11'

@description('Optional. Memory of each instance in MB. Flex Consumption offers 512, 2048 and 4096.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Maximum number of instances the app scales out to. Flex Consumption accepted 40 to 1000 when this template was written.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Required. App settings that the app code reads, by name. They are merged over the platform settings that this module sets.')
param appSettings object

var useUserAssignedIdentity = userAssignedIdentity != null

// A user-assigned identity is keyed by its resource id. The system-assigned identity is created with the app.
var siteIdentity = useUserAssignedIdentity ? {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${userAssignedIdentity!.resourceId}': {}
  }
} : {
  type: 'SystemAssigned'
}

// Security: the platform fetches the package with the app identity, because the account rejects keys.
var deploymentStorageAuthentication = useUserAssignedIdentity ? {
  type: 'UserAssignedIdentity'
  userAssignedIdentityResourceId: userAssignedIdentity!.resourceId
} : {
  type: 'SystemAssignedIdentity'
}

// Security: an identity-based host connection. The host gets a token for the identity in place of a
// connection string, so no storage secret exists in the settings.
var hostStorageSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
}

var queueAndTableSettings = useQueuesAndTables ? {
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
} : {}

// The host and azure-identity pick a user-assigned identity by client id. With the system-assigned
// identity both settings stay unset, which selects that identity.
var identitySettings = useUserAssignedIdentity ? {
  AzureWebJobsStorage__clientId: userAssignedIdentity!.clientId
  AZURE_CLIENT_ID: userAssignedIdentity!.clientId
} : {}

// Security: telemetry is sent with an Entra ID token for the app identity, because the component
// rejects the instrumentation key alone.
var monitoringSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: useUserAssignedIdentity ? 'ClientId=${userAssignedIdentity!.clientId};Authorization=AAD' : 'Authorization=AAD'
}

// The site takes its settings as a list of name and value pairs. Every deployment replaces the whole
// list, so a setting removed here is removed from the app as well.
var siteAppSettings = union(hostStorageSettings, queueAndTableSettings, identitySettings, monitoringSettings, appSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:A zone outage delays the reminders until the next scheduled run at worst, and zone-redundant Flex Consumption plans exist in only some regions.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Flex Consumption runs on Linux only, which the platform calls a reserved plan.
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers authenticate with a function key and, when turned on, an Entra ID token. Client certificates would add a secret that every caller must store and rotate.
  // checkov:skip=CKV_AZURE_16:checkov cannot resolve the identity block, which identityType picks from two variables. Both give the app a managed identity, as tests/test_infra.py asserts.
  // checkov:skip=CKV_AZURE_71:Same as CKV_AZURE_16: the identity block comes from a variable that checkov does not resolve, and tests/test_infra.py asserts both of its branches.
  // checkov:skip=CKV_AZURE_212:Flex Consumption has no fixed worker count. The platform adds instances on demand and scales to zero between reminder runs.
  // checkov:skip=CKV_AZURE_213:The app defines no health endpoint. Health check takes unhealthy instances out of a pool of always-on instances, and Flex Consumption keeps none.
  // checkov:skip=CKV_AZURE_222:Logic Apps and Power Automate call the app over the internet. Function keys and the optional Entra ID authentication guard the endpoint.
  name: name
  location: location
  // The one extra tag tells azd which app receives the code of the service in azure.yaml.
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: siteIdentity
  properties: {
    serverFarmId: plan.id
    // Security: plain HTTP requests are redirected to HTTPS.
    httpsOnly: true
    siteConfig: {
      // Security: TLS 1.2 or later for the app and its deployment endpoint, and no FTP at all.
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(siteAppSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    // Flex Consumption takes the runtime, scaling and package location from here. The app settings
    // FUNCTIONS_WORKER_RUNTIME and siteConfig.linuxFxVersion are rejected on this plan.
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: deploymentStorageAuthentication
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
    }
  }
}

@description('Required. Name of the function app.')
output name string = site.name

@description('Required. Default host name of the function app, without a scheme.')
output defaultHostName string = site.properties.defaultHostName

@description('Required. Object (principal) id of the identity that the app runs as.')
output principalId string = useUserAssignedIdentity ? userAssignedIdentity!.principalId : site.identity.principalId

@description('Identity of a user-assigned managed identity, as the identity module outputs it.')
type userAssignedIdentityInfo = {
  // Resource id, which keys the identity on the site and names it to the deployment storage.
  resourceId: string
  // Client (application) id, which the host and azure-identity pass to the token endpoint.
  clientId: string
  // Object (principal) id, which role assignments and the Graph grant target.
  principalId: string
}
