package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/ingest/smtpd"
)

// validateSubsystems runs every subsystem's own validation of the options
// the daemon would run with, without starting or writing anything. -check,
// start-up and reload all call it, so -check refuses exactly what start-up
// refuses, and a reload is validated whole before any subsystem applies it.
func validateSubsystems(cfg *configs.Config) error {
	var errs []error
	if accts, err := authAccounts(cfg); err != nil {
		errs = append(errs, fmt.Errorf("accounts (auth): %w", err))
	} else if err := auth.ValidateAccounts(accts); err != nil {
		errs = append(errs, fmt.Errorf("accounts (auth): %w", err))
	}
	if err := delivery.ValidateAccounts(deliveryAccounts(cfg)); err != nil {
		errs = append(errs, fmt.Errorf("accounts (delivery): %w", err))
	}
	if err := outagePolicy(cfg).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("delivery.outage: %w", err))
	}
	if err := smtpd.ValidateListeners(smtpListeners(cfg), filepath.Join(cfg.DataDir, "tls")); err != nil {
		errs = append(errs, fmt.Errorf("smtp_listeners: %w", err))
	}
	if folders, err := scanFolders(cfg); err != nil {
		errs = append(errs, err)
	} else if err := scanfolder.ValidateFolders(folders); err != nil {
		errs = append(errs, fmt.Errorf("scan_folders: %w", err))
	}
	return errors.Join(errs...)
}
