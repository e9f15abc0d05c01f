metadata name = 'Role assignments'
metadata description = 'Data-plane roles that the app identity needs on the host storage account and on Application Insights, and nothing more.'

@description('Required. Object (principal) id of the app identity.')
param principalId string

@description('Required. Name of the host storage account.')
param storageAccountName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Optional. Whether the app uses queues and tables in the host storage account, which adds the queue and table data roles.')
param useQueuesAndTables bool = false

// Built-in role definition ids, which are the same in every tenant.
// Security: Blob Data Owner is the role that the Functions host needs for its leases and the Flex
// package. It covers no queue or table data.
var blobRoles = {
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
}

// Security: queue and table rights are granted only when the app uses them.
var queueAndTableRoles = useQueuesAndTables ? {
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
} : {}

var storageRoles = union(blobRoles, queueAndTableRoles)

// Security: Monitoring Metrics Publisher lets the identity send telemetry to this one component and
// read nothing from it.
var monitoringRoles = {
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Each name is derived from scope, principal and role, so a redeployment finds the same assignment.
resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in items(storageRoles): {
  name: guid(storageAccount.id, principalId, role.value)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
    principalId: principalId
    // A fresh identity may not have replicated yet. The principal type lets the assignment skip that lookup.
    principalType: 'ServicePrincipal'
    description: '${role.key} for the access review reminders app'
  }
}]

resource monitoringRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in items(monitoringRoles): {
  name: guid(applicationInsights.id, principalId, role.value)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: '${role.key} for the access review reminders app'
  }
}]
