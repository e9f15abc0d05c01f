metadata name = 'Monitoring'
metadata description = 'Log Analytics workspace and workspace-based Application Insights that accept telemetry only with an Entra ID token.'

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Required. Azure region of both resources.')
param location string

@description('Required. Tags applied to both resources.')
param tags object

@description('Optional. Days that the workspace keeps logs. 30 is the shortest period that Log Analytics allows, and up to 31 days cost nothing extra.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Security: agents and APIs must use Entra ID, not the workspace keys.
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
    // Security: the instrumentation key alone cannot send telemetry. The app authenticates with
    // its identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and the Monitoring Metrics Publisher role.
    DisableLocalAuth: true
  }
}

@description('Required. Name of the Application Insights component, for the role assignment scope.')
output applicationInsightsName string = applicationInsights.name

@description('Required. Connection string of the Application Insights component. It is not a secret: with local auth off it only names the endpoint and the component.')
output connectionString string = applicationInsights.properties.ConnectionString
