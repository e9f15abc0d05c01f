metadata name = 'App Service authentication'
metadata description = 'Optional Microsoft Entra ID authentication in front of the function app, for callers such as a Logic App with a managed identity.'

@description('Required. Name of the existing function app.')
param functionAppName string

@description('Required. Whether App Service authentication checks every request. False turns it off, so function keys alone guard the HTTP functions.')
param enabled bool

@description('Optional. Client id of the app registration that callers request tokens for. Required when enabled is true.')
param audienceClientId string?

@description('Optional. Client (application) ids of the callers to admit, matched against the appid or azp claim.')
param allowedClientApplicationIds string[] = []

@description('Optional. Object (principal) ids of the callers to admit, matched against the oid claim, for example the principal id of a Logic App managed identity.')
param allowedPrincipalIds string[] = []

// The v2.0 issuer of this tenant. environment() gives the sign-in host of the current cloud.
var openIdIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

// Security: fail closed. With both lists empty, App Service would admit any caller in the tenant that
// can get a token for the audience, so an unused object id stands in and admits nobody instead.
var noCallerPrincipalIds = [
  '00000000-0000-0000-0000-000000000000'
]
var noCallersListed = empty(allowedClientApplicationIds) && empty(allowedPrincipalIds)
var admittedPrincipalIds = noCallersListed ? noCallerPrincipalIds : allowedPrincipalIds

// Only used when enabled is true, and then the client id is required.
var audience = audienceClientId!

var enabledSettings = {
  platform: {
    enabled: true
  }
  globalValidation: {
    // Security: every request needs a valid token, and a request without one gets 401, not a sign-in redirect.
    requireAuthentication: true
    unauthenticatedClientAction: 'Return401'
  }
  httpSettings: {
    requireHttps: true
  }
  identityProviders: {
    azureActiveDirectory: {
      enabled: true
      registration: {
        clientId: audience
        openIdIssuer: openIdIssuer
      }
      validation: {
        // Tokens for the identifier URI and for the bare client id both name this app.
        allowedAudiences: [
          'api://${audience}'
          audience
        ]
        defaultAuthorizationPolicy: {
          allowedApplications: allowedClientApplicationIds
          allowedPrincipals: {
            identities: admittedPrincipalIds
          }
        }
      }
    }
  }
  login: {
    tokenStore: {
      // The app only validates bearer tokens, so it keeps no sessions.
      enabled: false
    }
  }
}

// Turning the feature off is declared too, so a redeployment with enabled false switches it off.
var disabledSettings = {
  platform: {
    enabled: false
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:This check reads the version 1 authsettings format (properties.enabled). This resource uses authsettingsV2, where tests/test_infra.py checks platform.enabled.
  // checkov:skip=CKV_AZURE_56:Entra ID authentication is optional and off by default. Function keys guard the HTTP functions until enableEntraAuthentication turns it on.
  // checkov:skip=CKV_AZURE_63:This check reads a property of the 'web' config section, and this resource is the authsettingsV2 section.
  // checkov:skip=CKV_AZURE_65:This check reads a property of the 'web' config section, and this resource is the authsettingsV2 section.
  // checkov:skip=CKV_AZURE_66:This check reads a property of the 'web' config section, and this resource is the authsettingsV2 section.
  // checkov:skip=CKV_AZURE_80:This check reads a property of the 'web' config section, and this resource is the authsettingsV2 section.
  // checkov:skip=CKV_AZURE_88:This check reads a property of the 'web' config section, and this resource is the authsettingsV2 section.
  // checkov:skip=CKV_AZURE_222:This check reads a property of the 'web' config section, and this resource is the authsettingsV2 section.
  parent: functionApp
  name: 'authsettingsV2'
  properties: enabled ? enabledSettings : disabledSettings
}
