metadata name = 'Host storage'
metadata description = 'Storage account for the Functions host state and the Flex Consumption deployment package, reachable only with Entra ID tokens.'

@description('Required. Name of the storage account: 3 to 24 lowercase letters and digits, unique across Azure.')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the storage account.')
param location string

@description('Required. Tags applied to the storage account.')
param tags object

@description('Required. Name of the blob container that Flex Consumption reads the app package from.')
param deploymentContainerName string

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206:The account holds only host state and a package that a redeployment restores, so geo- or zone-redundant replication is not worth its cost.
  // checkov:skip=CKV_AZURE_35:Flex Consumption without virtual network integration reaches this account over its public endpoint, so the firewall must allow it. Access needs an Entra ID token because shared keys are off.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the app has no private endpoint to use, and Entra ID with shared keys off guards the public endpoint.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // Security: no account keys or SAS. The host, the deployment and the app use their identity.
    allowSharedKeyAccess: false
    // Security: Entra ID is the default in the portal as well, so nobody falls back to keys there.
    defaultToOAuthAuthentication: true
    // Security: no container or blob can be made readable anonymously.
    allowBlobPublicAccess: false
    // Security: reject plain HTTP and TLS below 1.2.
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    // Security: no SFTP or local users, which would authenticate without Entra ID.
    isLocalUserEnabled: false
    isSftpEnabled: false
    // Security: copy operations may only target accounts in the same Entra tenant.
    allowedCopyScope: 'AAD'
    allowCrossTenantReplication: false
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    // Deleted packages and host blobs stay recoverable for a week.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    // Security: the package is private, and the app reads it with its identity.
    publicAccess: 'None'
  }
}

@description('Required. Name of the storage account.')
output name string = storageAccount.name

@description('Required. Blob service endpoint, ending in a slash.')
output blobEndpoint string = storageAccount.properties.primaryEndpoints.blob

@description('Required. Queue service endpoint, ending in a slash.')
output queueEndpoint string = storageAccount.properties.primaryEndpoints.queue

@description('Required. Table service endpoint, ending in a slash.')
output tableEndpoint string = storageAccount.properties.primaryEndpoints.table

@description('Required. URL of the deployment container, which Flex Consumption reads the package from.')
output deploymentContainerUrl string = '${storageAccount.properties.primaryEndpoints.blob}${deploymentContainer.name}'
